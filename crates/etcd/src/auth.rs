//! etcdserverpb.Auth, simple tokens, and the permission checks every other
//! service calls (etcd 3.5's `v3rpc` and `etcdserver` API-layer checks;
//! the apply-time ones live in `janus_core::auth`).
//!
//! Credentials: the `token` gRPC metadata (or the JSON gateway's
//! `Authorization` header, `Bearer ` optional), else the verified TLS
//! client certificate's common name (see [`ClientCertCn`]). A token names a
//! user; it is checked at the auth revision current when it is used, as
//! etcd's simple tokens are. Writes are proposed as
//! `Command::AsUser` so that the state machine checks them against the
//! auth store as of their apply, as etcd's auth applier does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use janus_core::{AuthInfo, AuthOp, AuthState, Command, EtcdError, EtcdResponse, PermType};
use tonic::{Request, Response, Status};

use crate::error::RpcError;
use crate::pb::authpb;
use crate::pb::etcdserverpb::{self as pb, auth_server};
use crate::Ctx;

pub struct Auth(pub Arc<Ctx>);

pub use crate::tls::ClientCertCn;

/// The credentials one request (or one stream) came with.
#[derive(Debug, Clone, Default)]
pub(crate) struct Creds {
    token: Option<String>,
    cn: Option<String>,
}

impl Creds {
    /// etcd reads `token`, then grpc-gateway's `authorization`.
    pub fn of<T>(req: &Request<T>) -> Creds {
        let md = req.metadata();
        let token = md
            .get("token")
            .or_else(|| md.get("authorization"))
            .and_then(|v| v.to_str().ok())
            .map(|s| s.strip_prefix("Bearer ").unwrap_or(s).to_string());
        Creds::from_parts(
            token,
            req.extensions().get::<ClientCertCn>().map(|c| c.0.clone()),
        )
    }

    /// The hook for TLS: a token (if any) and the client certificate's
    /// verified common name (if any).
    pub fn from_parts(token: Option<String>, cn: Option<String>) -> Creds {
        Creds { token, cn }
    }
}

struct Token {
    user: String,
    /// The auth revision when it was issued (see `AuthState::token_valid`).
    issued: u64,
    /// Simple tokens live `auth_token_ttl` past their last use (etcd's
    /// TTL keeper resets on every use).
    last_used: Instant,
}

/// This member's simple tokens. Not replicated: a token works on the
/// member that issued it (etcd's clients re-authenticate on
/// "invalid auth token", which is what another member answers).
pub(crate) struct Tokens {
    ttl: Duration,
    map: Mutex<HashMap<String, Token>>,
}

const LETTERS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// etcd's simple token prefix: 16 random letters.
fn token_prefix() -> Result<String, RpcError> {
    let mut out = String::with_capacity(16);
    while out.len() < 16 {
        let mut buf = [0u8; 32];
        getrandom::fill(&mut buf).map_err(|e| RpcError::Internal(e.to_string()))?;
        // Rejection sampling keeps the letters uniform.
        for b in buf {
            if (b as usize) < LETTERS.len() * 4 && out.len() < 16 {
                out.push(LETTERS[b as usize % LETTERS.len()] as char);
            }
        }
    }
    Ok(out)
}

impl Tokens {
    pub fn new(ttl: Duration) -> Tokens {
        Tokens {
            ttl,
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Token>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn issue(&self, token: String, user: String, issued: u64) {
        let now = Instant::now();
        let mut m = self.lock();
        m.retain(|_, t| now.duration_since(t.last_used) <= self.ttl);
        m.insert(
            token,
            Token {
                user,
                issued,
                last_used: now,
            },
        );
    }

    /// The user a token stands for, if it is still good.
    fn user(&self, token: &str, auth: &AuthState) -> Option<String> {
        let now = Instant::now();
        let mut m = self.lock();
        let t = m.get_mut(token)?;
        if now.duration_since(t.last_used) > self.ttl || !auth.token_valid(&t.user, t.issued) {
            m.remove(token);
            return None;
        }
        t.last_used = now;
        Some(t.user.clone())
    }
}

impl Ctx {
    /// etcd's `AuthInfoFromCtx`: `None` when auth is off or the request
    /// carries no credentials; a bad token is an error.
    pub(crate) fn auth_info(&self, c: &Creds) -> Result<Option<AuthInfo>, RpcError> {
        let st = self.node.state();
        let a = st.auth();
        if !a.enabled() {
            return Ok(None);
        }
        if let Some(t) = &c.token {
            return match self.tokens.user(t, a) {
                Some(user) => Ok(Some(AuthInfo {
                    user,
                    revision: a.revision(),
                })),
                None => Err(EtcdError::InvalidAuthToken.into()),
            };
        }
        Ok(c.cn.as_ref().map(|cn| AuthInfo {
            user: cn.clone(),
            revision: a.revision(),
        }))
    }

    /// The caller as etcd's checks see it: no credentials = empty user.
    pub(crate) fn caller(&self, c: &Creds) -> Result<AuthInfo, RpcError> {
        Ok(self.auth_info(c)?.unwrap_or_default())
    }

    /// etcd's `requireAuthInfo`: with auth on, some credentials are needed.
    pub(crate) fn require_auth_info(&self, c: &Creds) -> Result<(), RpcError> {
        if !self.node.state().auth().enabled() {
            return Ok(());
        }
        match self.auth_info(c)? {
            Some(_) => Ok(()),
            None => Err(EtcdError::UserEmpty.into()),
        }
    }

    /// etcd's `isPermitted`/`isAuthenticated`: admin (root role) only.
    pub(crate) fn require_admin(&self, c: &Creds) -> Result<(), RpcError> {
        let ai = self.caller(c)?;
        Ok(self.node.state().auth().is_admin_permitted(&ai)?)
    }

    /// `require_admin` as etcd's Defragment, Snapshot, Hash and HashKV
    /// answer it: the auth package's own error, unconverted (code Unknown,
    /// `auth: ...` text).
    pub(crate) fn require_admin_raw(&self, c: &Creds) -> Result<(), Status> {
        self.require_admin(c).map_err(|e| {
            let text = match &e {
                RpcError::Core(EtcdError::UserEmpty) => "auth: user name is empty",
                RpcError::Core(EtcdError::UserNotFound) => "auth: user not found",
                RpcError::Core(EtcdError::PermissionDenied) => "auth: permission denied",
                RpcError::Core(EtcdError::InvalidAuthToken) => "auth: invalid auth token",
                _ => return Status::from(e),
            };
            Status::unknown(text)
        })
    }

    /// Wrap a write so the state machine checks it for the caller.
    pub(crate) fn as_caller(&self, c: &Creds, command: Command) -> Result<Command, RpcError> {
        let ai = self.caller(c)?;
        Ok(Command::AsUser {
            user: ai.user,
            auth_revision: ai.revision,
            command: Box::new(command),
        })
    }

    /// Read access to `[key, range_end)`, checked now (for reads served
    /// outside Raft and for the recipes' own reads).
    pub(crate) fn check_read(
        &self,
        c: &Creds,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), RpcError> {
        let ai = self.caller(c)?;
        Ok(self
            .node
            .state()
            .auth()
            .is_range_permitted(&ai, key, range_end)?)
    }

    /// Write access to one key, checked now.
    pub(crate) fn check_write(&self, c: &Creds, key: &[u8]) -> Result<(), RpcError> {
        let ai = self.caller(c)?;
        Ok(self.node.state().auth().is_put_permitted(&ai, key)?)
    }

    /// etcd's watch permission check: the cancel reason of a refused
    /// watcher, which etcd writes as a Go gRPC status error's text.
    pub(crate) fn watch_refusal(&self, c: &Creds, key: &[u8], range_end: &[u8]) -> Option<String> {
        let key = if key.is_empty() { &[0u8][..] } else { key };
        let err = match self.check_read(c, key, range_end) {
            Ok(()) => return None,
            Err(RpcError::Core(
                e @ (EtcdError::InvalidAuthToken
                | EtcdError::AuthOldRevision
                | EtcdError::UserEmpty),
            )) => e,
            Err(_) => EtcdError::PermissionDenied,
        };
        let s = Status::from(RpcError::Core(err));
        Some(format!(
            "rpc error: code = {:?} desc = {}",
            s.code(),
            s.message()
        ))
    }

    /// etcd's `checkLeaseRenew` (keep-alive): write access to the lease's
    /// keys unless admin.
    pub(crate) fn check_lease_renew(&self, c: &Creds, id: i64) -> Result<(), RpcError> {
        let st = self.node.state();
        let a = st.auth();
        if !a.enabled() {
            return Ok(());
        }
        drop(st);
        let Some(ai) = self.auth_info(c)? else {
            return Err(EtcdError::UserEmpty.into());
        };
        let st = self.node.state();
        if st.auth().is_admin_permitted(&ai).is_ok() {
            return Ok(());
        }
        for k in st.lease_keys(id) {
            st.auth().is_put_permitted(&ai, &k)?;
        }
        Ok(())
    }

    /// etcd's `checkLeaseTimeToLive` (with keys) and `checkLeaseLeases`:
    /// read access to every key of the leases, unless admin.
    pub(crate) fn check_lease_keys_readable(
        &self,
        c: &Creds,
        ids: Option<i64>,
    ) -> Result<(), RpcError> {
        if !self.node.state().auth().enabled() {
            return Ok(());
        }
        let Some(ai) = self.auth_info(c)? else {
            return Err(EtcdError::UserEmpty.into());
        };
        let st = self.node.state();
        if st.auth().is_admin_permitted(&ai).is_ok() {
            return Ok(());
        }
        let leases: Vec<_> = match ids {
            Some(id) => st.lease(id).into_iter().collect(),
            None => st
                .leases()
                .into_iter()
                .filter(|l| l.session.is_none())
                .collect(),
        };
        for l in leases {
            for k in st.lease_keys(l.id) {
                st.auth().is_range_permitted(&ai, &k, &[])?;
            }
        }
        Ok(())
    }

    async fn auth_write(&self, c: &Creds, op: AuthOp) -> Result<pb::ResponseHeader, RpcError> {
        let cmd = self.as_caller(c, Command::Auth(op))?;
        match self.write(cmd).await? {
            (EtcdResponse::Auth, rev) => Ok(self.header(rev)),
            (other, _) => Err(RpcError::Internal(format!(
                "unexpected apply result {other:?}"
            ))),
        }
    }
}

/// A bcrypt hash as etcd's Go code makes them (`$2a$`), off the async
/// threads (a cost-10 hash takes tens of milliseconds).
async fn hash_password(password: String, cost: u32) -> Result<Vec<u8>, Status> {
    // etcd falls back to the default for a cost bcrypt does not allow.
    let cost = if (4..=31).contains(&cost) { cost } else { 10 };
    let r = tokio::task::spawn_blocking(move || {
        bcrypt::non_truncating_hash_with_result(password.as_bytes(), cost)
    })
    .await
    .map_err(|e| Status::internal(e.to_string()))?;
    match r {
        Ok(parts) => Ok(parts.format_for_version(bcrypt::Version::TwoA).into_bytes()),
        // Go's bcrypt refuses what it would truncate; etcd passes the
        // plain error on (code Unknown).
        Err(bcrypt::BcryptError::Truncation(_)) => {
            Err(Status::unknown("bcrypt: password length exceeds 72 bytes"))
        }
        Err(e) => Err(Status::unknown(e.to_string())),
    }
}

fn perm_to_pb(p: &janus_core::Permission) -> authpb::Permission {
    authpb::Permission {
        perm_type: match p.perm_type {
            PermType::Read => authpb::permission::Type::Read,
            PermType::Write => authpb::permission::Type::Write,
            PermType::ReadWrite => authpb::permission::Type::Readwrite,
        } as i32,
        key: p.key.clone(),
        range_end: p.range_end.clone(),
    }
}

fn perm_of_pb(p: &authpb::Permission) -> Result<janus_core::Permission, Status> {
    use authpb::permission::Type;
    let perm_type = match Type::try_from(p.perm_type) {
        Ok(Type::Read) => PermType::Read,
        Ok(Type::Write) => PermType::Write,
        Ok(Type::Readwrite) => PermType::ReadWrite,
        Err(_) => return Err(Status::invalid_argument("janus: unknown permission type")),
    };
    Ok(janus_core::Permission {
        perm_type,
        key: p.key.clone(),
        range_end: p.range_end.clone(),
    })
}

#[tonic::async_trait]
impl auth_server::Auth for Auth {
    async fn auth_enable(
        &self,
        req: Request<pb::AuthEnableRequest>,
    ) -> Result<Response<pb::AuthEnableResponse>, Status> {
        let header = self.0.auth_write(&Creds::of(&req), AuthOp::Enable).await?;
        Ok(Response::new(pb::AuthEnableResponse {
            header: Some(header),
        }))
    }

    async fn auth_disable(
        &self,
        req: Request<pb::AuthDisableRequest>,
    ) -> Result<Response<pb::AuthDisableResponse>, Status> {
        let header = self.0.auth_write(&Creds::of(&req), AuthOp::Disable).await?;
        Ok(Response::new(pb::AuthDisableResponse {
            header: Some(header),
        }))
    }

    async fn auth_status(
        &self,
        req: Request<pb::AuthStatusRequest>,
    ) -> Result<Response<pb::AuthStatusResponse>, Status> {
        // etcd serves it through Raft with an admin check.
        self.0.node.read_index().await.map_err(RpcError::from)?;
        self.0.require_admin(&Creds::of(&req))?;
        let (enabled, auth_revision, rev) = {
            let st = self.0.node.state();
            (st.auth().enabled(), st.auth().revision(), st.revision())
        };
        Ok(Response::new(pb::AuthStatusResponse {
            header: Some(self.0.header(rev)),
            enabled,
            auth_revision,
        }))
    }

    async fn authenticate(
        &self,
        req: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let r = req.into_inner();
        self.0.node.read_index().await.map_err(RpcError::from)?;
        loop {
            // etcd's CheckPassword: the hash and the revision it was read at.
            let (hash, checked) = {
                let st = self.0.node.state();
                let a = st.auth();
                if !a.enabled() {
                    return Err(RpcError::from(EtcdError::AuthNotEnabled).into());
                }
                match a.user(&r.name) {
                    None => return Err(RpcError::from(EtcdError::AuthFailed).into()),
                    Some(u) if u.no_password => {
                        return Err(RpcError::from(EtcdError::NoPasswordUser).into())
                    }
                    Some(u) => (u.password.clone(), a.revision()),
                }
            };
            let password = r.password.clone();
            let ok = tokio::task::spawn_blocking(move || {
                std::str::from_utf8(&hash)
                    .ok()
                    .and_then(|h| bcrypt::verify(password.as_bytes(), h).ok())
                    .unwrap_or(false)
            })
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
            if !ok {
                return Err(RpcError::from(EtcdError::AuthFailed).into());
            }
            let index = self.0.node.metrics().last_applied.map_or(0, |l| l.index);
            let token = format!("{}.{index}", token_prefix()?);
            let (now, rev) = {
                let st = self.0.node.state();
                (st.auth().revision(), st.revision())
            };
            // The store changed while the password was checked: again, as etcd.
            if now != checked {
                continue;
            }
            self.0.tokens.issue(token.clone(), r.name.clone(), checked);
            return Ok(Response::new(pb::AuthenticateResponse {
                header: Some(self.0.header(rev)),
                token,
            }));
        }
    }

    async fn user_add(
        &self,
        req: Request<pb::AuthUserAddRequest>,
    ) -> Result<Response<pb::AuthUserAddResponse>, Status> {
        let c = Creds::of(&req);
        let r = req.into_inner();
        let no_password = r.options.is_some_and(|o| o.no_password);
        let password = if no_password {
            None
        } else {
            Some(hash_password(r.password, self.0.cfg.bcrypt_cost).await?)
        };
        let op = AuthOp::UserAdd {
            name: r.name,
            password,
            no_password,
        };
        let header = self.0.auth_write(&c, op).await?;
        Ok(Response::new(pb::AuthUserAddResponse {
            header: Some(header),
        }))
    }

    async fn user_get(
        &self,
        req: Request<pb::AuthUserGetRequest>,
    ) -> Result<Response<pb::AuthUserGetResponse>, Status> {
        self.0.node.read_index().await.map_err(RpcError::from)?;
        let ai = self.0.caller(&Creds::of(&req))?;
        let name = &req.get_ref().name;
        let st = self.0.node.state();
        // A user may read itself; anything else needs admin.
        if let Err(e) = st.auth().is_admin_permitted(&ai) {
            if *name != ai.user {
                return Err(RpcError::from(e).into());
            }
        }
        let roles = st
            .auth()
            .user(name)
            .ok_or(RpcError::Core(EtcdError::UserNotFound))?
            .roles
            .clone();
        let rev = st.revision();
        drop(st);
        Ok(Response::new(pb::AuthUserGetResponse {
            header: Some(self.0.header(rev)),
            roles,
        }))
    }

    async fn user_list(
        &self,
        req: Request<pb::AuthUserListRequest>,
    ) -> Result<Response<pb::AuthUserListResponse>, Status> {
        self.0.node.read_index().await.map_err(RpcError::from)?;
        self.0.require_admin(&Creds::of(&req))?;
        let (users, rev) = {
            let st = self.0.node.state();
            let users = st.auth().users().map(|u| u.name.clone()).collect();
            (users, st.revision())
        };
        Ok(Response::new(pb::AuthUserListResponse {
            header: Some(self.0.header(rev)),
            users,
        }))
    }

    async fn user_delete(
        &self,
        req: Request<pb::AuthUserDeleteRequest>,
    ) -> Result<Response<pb::AuthUserDeleteResponse>, Status> {
        let op = AuthOp::UserDelete {
            name: req.get_ref().name.clone(),
        };
        let header = self.0.auth_write(&Creds::of(&req), op).await?;
        Ok(Response::new(pb::AuthUserDeleteResponse {
            header: Some(header),
        }))
    }

    async fn user_change_password(
        &self,
        req: Request<pb::AuthUserChangePasswordRequest>,
    ) -> Result<Response<pb::AuthUserChangePasswordResponse>, Status> {
        let c = Creds::of(&req);
        let r = req.into_inner();
        let password = if !r.password.is_empty() {
            Some(hash_password(r.password, self.0.cfg.bcrypt_cost).await?)
        } else {
            // A client may send the hash itself (base64 of the bcrypt text).
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(r.hashed_password.as_bytes())
                .ok()
        };
        let op = AuthOp::UserChangePassword {
            name: r.name,
            password,
        };
        let header = self.0.auth_write(&c, op).await?;
        Ok(Response::new(pb::AuthUserChangePasswordResponse {
            header: Some(header),
        }))
    }

    async fn user_grant_role(
        &self,
        req: Request<pb::AuthUserGrantRoleRequest>,
    ) -> Result<Response<pb::AuthUserGrantRoleResponse>, Status> {
        let r = req.get_ref();
        let op = AuthOp::UserGrantRole {
            user: r.user.clone(),
            role: r.role.clone(),
        };
        let header = self.0.auth_write(&Creds::of(&req), op).await?;
        Ok(Response::new(pb::AuthUserGrantRoleResponse {
            header: Some(header),
        }))
    }

    async fn user_revoke_role(
        &self,
        req: Request<pb::AuthUserRevokeRoleRequest>,
    ) -> Result<Response<pb::AuthUserRevokeRoleResponse>, Status> {
        let r = req.get_ref();
        let op = AuthOp::UserRevokeRole {
            name: r.name.clone(),
            role: r.role.clone(),
        };
        let header = self.0.auth_write(&Creds::of(&req), op).await?;
        Ok(Response::new(pb::AuthUserRevokeRoleResponse {
            header: Some(header),
        }))
    }

    async fn role_add(
        &self,
        req: Request<pb::AuthRoleAddRequest>,
    ) -> Result<Response<pb::AuthRoleAddResponse>, Status> {
        let op = AuthOp::RoleAdd {
            name: req.get_ref().name.clone(),
        };
        let header = self.0.auth_write(&Creds::of(&req), op).await?;
        Ok(Response::new(pb::AuthRoleAddResponse {
            header: Some(header),
        }))
    }

    async fn role_get(
        &self,
        req: Request<pb::AuthRoleGetRequest>,
    ) -> Result<Response<pb::AuthRoleGetResponse>, Status> {
        self.0.node.read_index().await.map_err(RpcError::from)?;
        let ai = self.0.caller(&Creds::of(&req))?;
        let role = &req.get_ref().role;
        let st = self.0.node.state();
        // A user may read its own roles; anything else needs admin.
        if let Err(e) = st.auth().is_admin_permitted(&ai) {
            if !st.auth().user(&ai.user).is_some_and(|u| u.has_role(role)) {
                return Err(RpcError::from(e).into());
            }
        }
        let perm = st
            .auth()
            .role(role)
            .ok_or(RpcError::Core(EtcdError::RoleNotFound))?
            .perms
            .iter()
            .map(perm_to_pb)
            .collect();
        let rev = st.revision();
        drop(st);
        Ok(Response::new(pb::AuthRoleGetResponse {
            header: Some(self.0.header(rev)),
            perm,
        }))
    }

    async fn role_list(
        &self,
        req: Request<pb::AuthRoleListRequest>,
    ) -> Result<Response<pb::AuthRoleListResponse>, Status> {
        self.0.node.read_index().await.map_err(RpcError::from)?;
        self.0.require_admin(&Creds::of(&req))?;
        let (roles, rev) = {
            let st = self.0.node.state();
            let roles = st.auth().roles().map(|r| r.name.clone()).collect();
            (roles, st.revision())
        };
        Ok(Response::new(pb::AuthRoleListResponse {
            header: Some(self.0.header(rev)),
            roles,
        }))
    }

    async fn role_delete(
        &self,
        req: Request<pb::AuthRoleDeleteRequest>,
    ) -> Result<Response<pb::AuthRoleDeleteResponse>, Status> {
        let op = AuthOp::RoleDelete {
            name: req.get_ref().role.clone(),
        };
        let header = self.0.auth_write(&Creds::of(&req), op).await?;
        Ok(Response::new(pb::AuthRoleDeleteResponse {
            header: Some(header),
        }))
    }

    async fn role_grant_permission(
        &self,
        req: Request<pb::AuthRoleGrantPermissionRequest>,
    ) -> Result<Response<pb::AuthRoleGrantPermissionResponse>, Status> {
        let r = req.get_ref();
        let perm = r.perm.as_ref().map(perm_of_pb).transpose()?;
        let op = AuthOp::RoleGrantPermission {
            name: r.name.clone(),
            perm,
        };
        let header = self.0.auth_write(&Creds::of(&req), op).await?;
        Ok(Response::new(pb::AuthRoleGrantPermissionResponse {
            header: Some(header),
        }))
    }

    async fn role_revoke_permission(
        &self,
        req: Request<pb::AuthRoleRevokePermissionRequest>,
    ) -> Result<Response<pb::AuthRoleRevokePermissionResponse>, Status> {
        let r = req.get_ref();
        let op = AuthOp::RoleRevokePermission {
            role: r.role.clone(),
            key: r.key.clone(),
            range_end: r.range_end.clone(),
        };
        let header = self.0.auth_write(&Creds::of(&req), op).await?;
        Ok(Response::new(pb::AuthRoleRevokePermissionResponse {
            header: Some(header),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_prefixes_are_sixteen_letters() {
        let a = token_prefix().unwrap();
        let b = token_prefix().unwrap();
        assert_eq!(a.len(), 16);
        assert!(a.bytes().all(|c| c.is_ascii_alphabetic()));
        assert_ne!(a, b);
    }

    #[test]
    fn credentials_from_metadata() {
        let mut r = Request::new(());
        r.metadata_mut()
            .insert("authorization", "Bearer abc.1".parse().unwrap());
        assert_eq!(Creds::of(&r).token.as_deref(), Some("abc.1"));
        r.metadata_mut().insert("token", "xyz.2".parse().unwrap());
        assert_eq!(Creds::of(&r).token.as_deref(), Some("xyz.2"));
        r.extensions_mut().insert(ClientCertCn("alice".into()));
        assert_eq!(Creds::of(&r).cn.as_deref(), Some("alice"));
    }

    #[test]
    fn hashes_verify_like_go_bcrypt() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let h = rt.block_on(hash_password("pw".into(), 4)).unwrap();
        let h = String::from_utf8(h).unwrap();
        assert!(h.starts_with("$2a$04$"), "{h}");
        assert!(bcrypt::verify("pw", &h).unwrap());
        let long = "x".repeat(73);
        let e = rt.block_on(hash_password(long, 4)).unwrap_err();
        assert_eq!(e.message(), "bcrypt: password length exceeds 72 bytes");
    }
}
