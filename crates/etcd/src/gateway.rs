//! etcd's JSON gateway (grpc-gateway): `POST /v3/<service>/<method>` with a
//! proto3-JSON body (proto field names, base64 bytes, int64 as strings),
//! answered by the same service code as gRPC. Streaming methods (watch,
//! lease keep-alive) answer newline-separated `{"result": ...}` objects.
//! Plus `/livez` and `/readyz`.

use std::future::Future;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::sync::mpsc;
use tonic::{Code, Request, Status};

use crate::auth::Auth;
use crate::cluster::{Cluster, Maintenance};
use crate::kv::Kv;
use crate::lease::Lease;
use crate::pb::etcdserverpb::{self as pb, auth_server::Auth as _, cluster_server::Cluster as _};
use crate::pb::etcdserverpb::{
    kv_server::Kv as _, lease_server::Lease as _, maintenance_server::Maintenance as _,
};
use crate::pb::v3electionpb::election_server::Election as _;
use crate::pb::v3lockpb::lock_server::Lock as _;
use crate::recipes::{Election, Lock};
use crate::Ctx;

/// grpc-gateway's HTTP status for a gRPC code.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
            StatusCode::BAD_REQUEST
        }
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

fn error(s: &Status) -> Response {
    let body = serde_json::json!({ "error": s.message(), "code": s.code() as i32, "message": s.message() });
    (
        http_status(s.code()),
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn parse<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, Status> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| Status::invalid_argument(e.to_string()))
}

/// grpc-gateway passes the `Authorization` header on as gRPC metadata
/// (etcd reads a token from it).
fn with_auth<T>(headers: &HeaderMap, msg: T) -> Request<T> {
    let mut req = Request::new(msg);
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
    {
        req.metadata_mut().insert("authorization", v);
    }
    req
}

fn creds(headers: &HeaderMap) -> crate::auth::Creds {
    crate::auth::Creds::of(&with_auth(headers, ()))
}

async fn unary<Req, Resp, Fut>(
    headers: HeaderMap,
    body: Bytes,
    call: impl FnOnce(Request<Req>) -> Fut,
) -> Response
where
    Req: DeserializeOwned + Default,
    Resp: Serialize,
    Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
{
    let req = match parse::<Req>(&body) {
        Ok(r) => r,
        Err(s) => return error(&s),
    };
    match call(with_auth(&headers, req)).await {
        Ok(resp) => match serde_json::to_string(resp.get_ref()) {
            Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
            Err(e) => error(&Status::internal(e.to_string())),
        },
        Err(s) => error(&s),
    }
}

/// Every JSON object in the body, in order.
fn requests<T: DeserializeOwned>(body: &[u8]) -> Vec<Result<T, Status>> {
    serde_json::Deserializer::from_slice(body)
        .into_iter::<T>()
        .map(|r| r.map_err(|e| Status::invalid_argument(e.to_string())))
        .collect()
}

/// A streamed answer: one `{"result": ...}` line per message.
fn stream<T: Serialize + Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> Response {
    let lines = tokio_stream::wrappers::ReceiverStream::new(rx).map(|m| {
        let v = match m {
            Ok(r) => serde_json::json!({ "result": r }),
            Err(s) => serde_json::json!({ "error": { "grpc_code": s.code() as i32, "http_code": http_status(s.code()).as_u16(), "message": s.message() } }),
        };
        Ok::<_, std::convert::Infallible>(Bytes::from(format!("{v}\n")))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// Go's `http.Error`: the text and a newline, as plain text.
fn go_http_error(status: StatusCode) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        format!("{}\n", status.canonical_reason().unwrap_or_default()),
    )
        .into_response()
}

/// grpc-gateway's answer to a path under `/v3/` it has no method for.
async fn not_found() -> Response {
    go_http_error(StatusCode::NOT_FOUND)
}

/// grpc-gateway's answer to a known path with a method other than POST.
async fn method_not_allowed() -> Response {
    go_http_error(StatusCode::METHOD_NOT_ALLOWED)
}

macro_rules! route {
    ($router:ident, $ctx:ident, $path:expr, $svc:ident, $method:ident) => {{
        let ctx = $ctx.clone();
        $router = $router.route(
            $path,
            post(move |headers: HeaderMap, body: Bytes| {
                let svc = $svc(ctx.clone());
                async move { unary(headers, body, |r| async move { svc.$method(r).await }).await }
            })
            .fallback(method_not_allowed),
        );
    }};
}

pub(crate) fn router(ctx: Arc<Ctx>) -> Router {
    let mut r = Router::new();
    route!(r, ctx, "/v3/kv/range", Kv, range);
    route!(r, ctx, "/v3/kv/put", Kv, put);
    route!(r, ctx, "/v3/kv/deleterange", Kv, delete_range);
    route!(r, ctx, "/v3/kv/txn", Kv, txn);
    route!(r, ctx, "/v3/kv/compaction", Kv, compact);
    route!(r, ctx, "/v3/lease/grant", Lease, lease_grant);
    route!(r, ctx, "/v3/lease/revoke", Lease, lease_revoke);
    route!(r, ctx, "/v3/kv/lease/revoke", Lease, lease_revoke);
    route!(r, ctx, "/v3/lease/timetolive", Lease, lease_time_to_live);
    route!(r, ctx, "/v3/kv/lease/timetolive", Lease, lease_time_to_live);
    route!(r, ctx, "/v3/lease/leases", Lease, lease_leases);
    route!(r, ctx, "/v3/kv/lease/leases", Lease, lease_leases);
    route!(r, ctx, "/v3/cluster/member/add", Cluster, member_add);
    route!(r, ctx, "/v3/cluster/member/remove", Cluster, member_remove);
    route!(r, ctx, "/v3/cluster/member/update", Cluster, member_update);
    route!(r, ctx, "/v3/cluster/member/list", Cluster, member_list);
    route!(
        r,
        ctx,
        "/v3/cluster/member/promote",
        Cluster,
        member_promote
    );
    route!(r, ctx, "/v3/maintenance/alarm", Maintenance, alarm);
    route!(r, ctx, "/v3/maintenance/status", Maintenance, status);
    route!(
        r,
        ctx,
        "/v3/maintenance/defragment",
        Maintenance,
        defragment
    );
    route!(r, ctx, "/v3/maintenance/hash", Maintenance, hash);
    route!(r, ctx, "/v3/maintenance/hashkv", Maintenance, hash_kv);
    route!(
        r,
        ctx,
        "/v3/maintenance/transfer-leadership",
        Maintenance,
        move_leader
    );
    route!(r, ctx, "/v3/lock/lock", Lock, lock);
    route!(r, ctx, "/v3/lock/unlock", Lock, unlock);
    route!(r, ctx, "/v3/election/campaign", Election, campaign);
    route!(r, ctx, "/v3/election/proclaim", Election, proclaim);
    route!(r, ctx, "/v3/election/leader", Election, leader);
    route!(r, ctx, "/v3/election/resign", Election, resign);
    route!(r, ctx, "/v3/auth/enable", Auth, auth_enable);
    route!(r, ctx, "/v3/auth/disable", Auth, auth_disable);
    route!(r, ctx, "/v3/auth/status", Auth, auth_status);
    route!(r, ctx, "/v3/auth/authenticate", Auth, authenticate);
    route!(r, ctx, "/v3/auth/user/add", Auth, user_add);
    route!(r, ctx, "/v3/auth/user/get", Auth, user_get);
    route!(r, ctx, "/v3/auth/user/list", Auth, user_list);
    route!(r, ctx, "/v3/auth/user/delete", Auth, user_delete);
    route!(r, ctx, "/v3/auth/user/changepw", Auth, user_change_password);
    route!(r, ctx, "/v3/auth/user/grant", Auth, user_grant_role);
    route!(r, ctx, "/v3/auth/user/revoke", Auth, user_revoke_role);
    route!(r, ctx, "/v3/auth/role/add", Auth, role_add);
    route!(r, ctx, "/v3/auth/role/get", Auth, role_get);
    route!(r, ctx, "/v3/auth/role/list", Auth, role_list);
    route!(r, ctx, "/v3/auth/role/delete", Auth, role_delete);
    route!(r, ctx, "/v3/auth/role/grant", Auth, role_grant_permission);
    route!(r, ctx, "/v3/auth/role/revoke", Auth, role_revoke_permission);

    let c = ctx.clone();
    r = r.route(
        "/v3/watch",
        post(move |headers: HeaderMap, body: Bytes| {
            let ctx = c.clone();
            async move {
                let (tx, rx) = mpsc::channel(64);
                let input = futures::stream::iter(requests::<pb::WatchRequest>(&body));
                tokio::spawn(crate::watch::run(ctx, creds(&headers), input, tx, false));
                stream(rx)
            }
        })
        .fallback(method_not_allowed),
    );
    let c = ctx.clone();
    r = r.route(
        "/v3/lease/keepalive",
        post(move |headers: HeaderMap, body: Bytes| {
            let ctx = c.clone();
            async move {
                let (tx, rx) = mpsc::channel(16);
                let reqs = requests::<pb::LeaseKeepAliveRequest>(&body);
                let creds = creds(&headers);
                tokio::spawn(async move {
                    for req in reqs {
                        let resp = match req {
                            Ok(r) => match ctx.check_lease_renew(&creds, r.id) {
                                Ok(()) => ctx.keepalive_one(r.id).await,
                                Err(e) => Err(e.into()),
                            },
                            Err(s) => Err(s),
                        };
                        if tx.send(resp).await.is_err() {
                            break;
                        }
                    }
                });
                stream(rx)
            }
        })
        .fallback(method_not_allowed),
    );
    let c = ctx.clone();
    r = r.route(
        "/v3/maintenance/snapshot",
        post(move |headers: HeaderMap, _body: Bytes| {
            let ctx = c.clone();
            async move {
                let (tx, rx) = mpsc::channel(4);
                tokio::spawn(async move {
                    match Maintenance(ctx)
                        .snapshot(with_auth(&headers, pb::SnapshotRequest {}))
                        .await
                    {
                        Ok(s) => {
                            let mut s = s.into_inner();
                            while let Some(m) = s.next().await {
                                if tx.send(m).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                        }
                    }
                });
                stream(rx)
            }
        })
        .fallback(method_not_allowed),
    );
    // Anything else under /v3/ is the gateway's 404 (not the gRPC router's
    // Unimplemented); Go's ServeMux redirects the bare prefix.
    r = r
        .route("/v3/", any(not_found))
        .route("/v3/{*rest}", any(not_found))
        .route(
            "/v3",
            any(|| async { (StatusCode::MOVED_PERMANENTLY, [(header::LOCATION, "/v3/")]) }),
        );
    let c = ctx.clone();
    r = r.route("/livez", get(|| async { "ok" }));
    r.route(
        "/readyz",
        get(move || {
            let ctx = c.clone();
            async move {
                if ctx.node.leader().is_some() {
                    (StatusCode::OK, "ok")
                } else {
                    (StatusCode::SERVICE_UNAVAILABLE, "not ready: no leader")
                }
            }
        }),
    )
}
