//! openraft's network over the tonic peer service.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use janus_store::{Member as BasicNode, NodeId, TypeConfig};
use janus_tls::rustls;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

use crate::proto::peer_client::PeerClient;
use crate::proto::RaftMessage;

/// Largest gRPC message between peers (snapshot chunks and log batches).
pub const MAX_PEER_MESSAGE: usize = 64 << 20;

/// TLS between members (etcd's `--peer-cert-file`, `--peer-key-file`,
/// `--peer-trusted-ca-file`, `--peer-client-cert-auth`, `--peer-crl-file`,
/// `--peer-auto-tls`): the rustls configurations of the peer port's
/// listener and of this member's connections to the others, built by the
/// binary (`janus_tls`: certificates checked as Go checks them, or not at
/// all with auto TLS, as etcd does).
#[derive(Clone)]
pub struct PeerTls {
    pub server: Arc<rustls::ServerConfig>,
    pub client: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls").finish_non_exhaustive()
    }
}

static PEER_TLS: OnceLock<PeerTls> = OnceLock::new();

/// Turn peer TLS on for this process, before the node starts: every peer
/// connection (Raft, forwarding, reads) then uses https. Set once; a
/// second call is refused.
pub fn set_peer_tls(tls: PeerTls) -> Result<(), PeerTls> {
    PEER_TLS.set(tls)
}

/// The process's peer TLS settings, if on.
pub fn peer_tls() -> Option<&'static PeerTls> {
    PEER_TLS.get()
}

/// The URL of a peer address: an explicit `http://` or `https://` is kept;
/// a bare `host:port` gets https when peer TLS is on.
pub fn peer_url(addr: &str) -> String {
    if addr.starts_with("http://") || addr.starts_with("https://") {
        addr.to_string()
    } else if peer_tls().is_some() {
        format!("https://{addr}")
    } else {
        format!("http://{addr}")
    }
}

/// Connections to peers, one lazily-connected HTTP/2 channel per address.
///
/// A channel that fails below gRPC (other than by a request's own timeout)
/// is dropped and the next call dials afresh: tonic keeps using an HTTP/2
/// connection the server has sent GOAWAY on (the peer's h2 server does so
/// when a paused member wakes up to a backlog of cancelled streams), and
/// every request on it then fails with "transport error" while the other
/// direction of the link works: a leader nobody can forward writes to.
#[derive(Clone, Default)]
pub struct Channels {
    inner: Arc<Mutex<HashMap<String, (u64, Channel)>>>,
    next_gen: Arc<std::sync::atomic::AtomicU64>,
    /// When a voter last refused this member's vote for having a longer
    /// log (the election watchdog then lets that voter campaign first).
    behind_since: Arc<Mutex<Option<std::time::Instant>>>,
    /// Vote replies received (granted or not): a campaign none of whose
    /// requests was answered was made from behind a cut.
    vote_replies: Arc<std::sync::atomic::AtomicU64>,
    /// When a voter last refused this member's vote having voted for
    /// another candidate in the same term (a split vote).
    split_at: Arc<Mutex<Option<std::time::Instant>>>,
}

impl Channels {
    /// When a voter last refused our vote because its log is ahead of ours.
    pub(crate) fn refused_as_behind(&self) -> Option<std::time::Instant> {
        *self.behind_since.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn vote_replies(&self) -> u64 {
        self.vote_replies.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn split_vote(&self) -> Option<std::time::Instant> {
        *self.split_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn note_behind(&self) {
        *self.behind_since.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now());
    }

    /// A client for the peer at `addr` (`host:port`).
    pub fn client(&self, addr: &str) -> Result<PeerClient<PeerChannel>, tonic::transport::Error> {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (gen, ch) = match map.get(addr) {
            Some((gen, ch)) => (*gen, ch.clone()),
            None => {
                let url = peer_url(addr);
                let tls = peer_tls().filter(|_| url.starts_with("https://"));
                // With Janus's own TLS connector (below) tonic must see a
                // plain URL: it refuses https without its own TLS settings.
                let dial = match tls {
                    Some(_) => url.replacen("https://", "http://", 1),
                    None => url.clone(),
                };
                let mut ep = Endpoint::from_shared(dial)?;
                if url.starts_with("https://") && tls.is_none() {
                    // https without peer TLS configured: rustls with no
                    // roots fails every handshake, which says why in the log.
                    ep = ep.tls_config(ClientTlsConfig::new())?;
                }
                let ep = ep
                    .connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(5));
                let ch = match tls {
                    // Janus's own TLS connector: tonic's TLS settings take
                    // no custom certificate verifier.
                    Some(tls) => {
                        let cfg = tls.client.clone();
                        ep.connect_with_connector_lazy(tower::service_fn(
                            move |uri: tonic::codegen::http::Uri| {
                                let host = uri.host().unwrap_or_default().to_string();
                                let port = uri.port_u16().unwrap_or(443);
                                janus_tls::net::connect(host, port, cfg.clone())
                            },
                        ))
                    }
                    None => ep.connect_lazy(),
                };
                let gen = self
                    .next_gen
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                map.insert(addr.to_string(), (gen, ch.clone()));
                (gen, ch)
            }
        };
        let ch = PeerChannel {
            inner: ch,
            addr: addr.to_string(),
            gen,
            owner: self.clone(),
        };
        Ok(PeerClient::new(ch)
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE))
    }

    /// Drop `addr`'s channel if it is still generation `gen`.
    fn forget(&self, addr: &str, gen: u64) {
        let mut map = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(addr).is_some_and(|(g, _)| *g == gen) {
            map.remove(addr);
            tracing::debug!(peer = addr, "peer channel failed; the next call reconnects");
        }
    }
}

/// A peer channel that reports transport failures to its [`Channels`].
#[derive(Clone)]
pub struct PeerChannel {
    inner: Channel,
    addr: String,
    gen: u64,
    owner: Channels,
}

impl PeerChannel {
    fn failed(&self, e: &tonic::transport::Error) {
        // A request's own deadline says nothing about the connection.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = source {
            if err.is::<tonic::TimeoutExpired>() {
                return;
            }
            source = err.source();
        }
        self.owner.forget(&self.addr, self.gen);
    }
}

type HttpBody = tonic::body::Body;

impl tonic::codegen::Service<tonic::codegen::http::Request<HttpBody>> for PeerChannel {
    type Response = tonic::codegen::http::Response<HttpBody>;
    type Error = tonic::transport::Error;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        let r = tonic::codegen::Service::poll_ready(&mut self.inner, cx);
        if let std::task::Poll::Ready(Err(e)) = &r {
            self.failed(e);
        }
        r
    }

    fn call(&mut self, req: tonic::codegen::http::Request<HttpBody>) -> Self::Future {
        let fut = tonic::codegen::Service::call(&mut self.inner, req);
        let me = self.clone();
        Box::pin(async move {
            let r = fut.await;
            if let Err(e) = &r {
                me.failed(e);
            }
            r
        })
    }
}

/// Whether a peer call failed before its request could reach the peer: no
/// connection could be made (refused, or the connect timed out). Such a
/// call is safe to retry elsewhere; any other failure leaves its outcome
/// unknown.
pub(crate) fn never_sent(s: &tonic::Status) -> bool {
    if s.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(s);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        let text = err.to_string();
        if text.contains("tcp connect error") || text.contains("error trying to connect") {
            return true;
        }
        source = err.source();
    }
    false
}

/// Builds per-target clients for openraft.
#[derive(Clone, Default)]
pub struct Network {
    pub channels: Channels,
}

pub struct Connection {
    target: NodeId,
    addr: String,
    channels: Channels,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Connection {
        Connection {
            target,
            addr: node.addr.clone(),
            channels: self.channels.clone(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Msg(String);

pub(crate) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, tonic::Status> {
    postcard::to_stdvec(v).map_err(|e| tonic::Status::internal(format!("encode: {e}")))
}

pub(crate) fn decode<T: DeserializeOwned>(b: &[u8]) -> Result<T, tonic::Status> {
    postcard::from_bytes(b).map_err(|e| tonic::Status::invalid_argument(format!("decode: {e}")))
}

impl Connection {
    /// Send one raft message; `Err(RPCError)` for transport failures,
    /// `Ok(Err(e))` when the remote raft answered with an error.
    async fn call<Req, Resp, E>(
        &self,
        req: &Req,
        option: &RPCOption,
        which: fn(
            PeerClient<PeerChannel>,
            tonic::Request<RaftMessage>,
        ) -> futures::future::BoxFuture<
            'static,
            Result<tonic::Response<RaftMessage>, tonic::Status>,
        >,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = self
            .channels
            .client(&self.addr)
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let payload =
            postcard::to_stdvec(req).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        let mut request = tonic::Request::new(RaftMessage { payload });
        request.set_timeout(option.hard_ttl());
        let resp = which(client, request).await.map_err(|s| match s.code() {
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => {
                RPCError::Unreachable(Unreachable::new(&Msg(s.message().to_string())))
            }
            _ => RPCError::Network(NetworkError::new(&Msg(format!(
                "{}: {}",
                s.code(),
                s.message()
            )))),
        })?;
        let result: Result<Resp, RaftError<NodeId, E>> =
            postcard::from_bytes(&resp.into_inner().payload)
                .map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(&rpc, &option, |mut c, r| {
            Box::pin(async move { c.append_entries(r).await })
        })
        .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(&rpc, &option, |mut c, r| {
            Box::pin(async move { c.install_snapshot(r).await })
        })
        .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let resp: VoteResponse<NodeId> = self
            .call(&rpc, &option, |mut c, r| {
                Box::pin(async move { c.vote(r).await })
            })
            .await?;
        self.channels
            .vote_replies
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (mine, theirs) = (rpc.vote.leader_id(), resp.vote.leader_id());
        if !resp.vote_granted && theirs.term == mine.term && theirs.voted_for() != mine.voted_for()
        {
            *self
                .channels
                .split_at
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        }
        if !resp.vote_granted && resp.last_log_id > rpc.last_log_id {
            self.channels.note_behind();
        }
        Ok(resp)
    }
}
