//! etcd's auth store as replicated state: the enabled flag, users, roles
//! with key-range permissions, user↔role grants and the auth revision.
//!
//! The rules are etcd 3.5's (`server/auth/store.go`,
//! `range_perm_cache.go`, `etcdserver/apply_auth.go`). Passwords arrive
//! already bcrypt-hashed in the proposal (hashing needs randomness, which
//! `core` has none of); checking a password against the hash and issuing
//! tokens happen in the etcd personality. An auth change bumps the auth
//! revision, never the revision clock (design decision 1).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::{Command, EtcdResponse, RequestOp, TxnRequest};
use crate::error::EtcdError;
use crate::state::State;

/// The user and the role that bypass every permission check.
pub const ROOT: &str = "root";

/// authpb.Permission.Type (the wire values are READ 0, WRITE 1, READWRITE 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PermType {
    Read,
    Write,
    ReadWrite,
}

impl PermType {
    fn reads(self) -> bool {
        matches!(self, PermType::Read | PermType::ReadWrite)
    }
    fn writes(self) -> bool {
        matches!(self, PermType::Write | PermType::ReadWrite)
    }
}

/// A key-range permission: `range_end` empty = the key alone, `"\0"` =
/// every key from `key` on, otherwise `[key, range_end)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Permission {
    pub perm_type: PermType,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub name: String,
    /// The bcrypt hash (etcd's `$2a$...` bytes); empty for a no-password user.
    pub password: Vec<u8>,
    /// etcd's `UserAddOptions.no_password`: only TLS common names log in.
    pub no_password: bool,
    /// Granted roles, sorted (etcd keeps them sorted).
    pub roles: Vec<String>,
    /// The auth revision at which this user's credentials were last set
    /// (add, password change): tokens issued before it are void, as etcd
    /// invalidates a user's tokens on those changes.
    pub since: u64,
}

impl User {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles
            .binary_search_by(|r| r.as_str().cmp(role))
            .is_ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    pub name: String,
    /// Sorted by key, as etcd keeps them.
    pub perms: Vec<Permission>,
}

/// Who is asking: etcd's `AuthInfo`. An empty user (revision 0) means no
/// credentials were given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuthInfo {
    pub user: String,
    /// The auth revision the caller's credentials were checked at.
    pub revision: u64,
}

/// One auth-store change, as proposed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthOp {
    Enable,
    Disable,
    /// `password`: the bcrypt hash; `None` when the request's hashed
    /// password was unusable (etcd answers that as a no-password error).
    UserAdd {
        name: String,
        password: Option<Vec<u8>>,
        no_password: bool,
    },
    UserDelete {
        name: String,
    },
    UserChangePassword {
        name: String,
        password: Option<Vec<u8>>,
    },
    UserGrantRole {
        user: String,
        role: String,
    },
    UserRevokeRole {
        name: String,
        role: String,
    },
    RoleAdd {
        name: String,
    },
    RoleDelete {
        name: String,
    },
    /// `perm: None` is a request without a permission.
    RoleGrantPermission {
        name: String,
        perm: Option<Permission>,
    },
    RoleRevokePermission {
        role: String,
        key: Vec<u8>,
        range_end: Vec<u8>,
    },
}

/// The auth store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthState {
    pub(crate) enabled: bool,
    /// etcd's authStore revision: a fresh store is at 1.
    pub(crate) revision: u64,
    /// The auth revision when auth was last enabled: older tokens are void
    /// (etcd drops every token on disable).
    pub(crate) enabled_at: u64,
    pub(crate) users: BTreeMap<String, User>,
    pub(crate) roles: BTreeMap<String, Role>,
}

impl Default for AuthState {
    fn default() -> Self {
        AuthState {
            enabled: false,
            revision: 1,
            enabled_at: 0,
            users: BTreeMap::new(),
            roles: BTreeMap::new(),
        }
    }
}

/// A point or interval end: `None` is +infinity (etcd's "affine" empty end).
type End = Option<Vec<u8>>;

fn end_lt(a: &End, b: &End) -> bool {
    match (a, b) {
        (_, None) => a.is_some(),
        (None, Some(_)) => false,
        (Some(x), Some(y)) => x < y,
    }
}

/// The key after `k` in byte order: `k + "\0"`.
fn successor(k: &[u8]) -> Vec<u8> {
    let mut e = k.to_vec();
    e.push(0);
    e
}

/// `[begin, end)` of a permission or of a request's range.
fn interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    if range_end.is_empty() {
        (key.to_vec(), Some(successor(key)))
    } else if range_end == [0] {
        (key.to_vec(), None)
    } else {
        (key.to_vec(), Some(range_end.to_vec()))
    }
}

/// etcd's interval tree test `q.Compare(n) == 0`.
fn intersects(q: &(Vec<u8>, End), n: &(Vec<u8>, End)) -> bool {
    let q_end = &q.1;
    let left = q.0 < n.0 && !end_lt(&Some(n.0.clone()), q_end);
    let right = !end_lt(&Some(q.0.clone()), &n.1);
    !left && !right
}

/// etcd's `IntervalTree.Contains`: the permissions intersecting `q`,
/// taken in begin order, form one contiguous run covering `q`.
fn covers(perms: &[(Vec<u8>, End)], q: &(Vec<u8>, End)) -> bool {
    let mut hits: Vec<&(Vec<u8>, End)> = perms.iter().filter(|n| intersects(q, n)).collect();
    hits.sort_by(|a, b| a.0.cmp(&b.0));
    let Some(first) = hits.first() else {
        return false;
    };
    let min_begin = &first.0;
    let mut max_end = &first.1;
    for n in &hits[1..] {
        if end_lt(max_end, &Some(n.0.clone())) {
            return false;
        }
        if end_lt(max_end, &n.1) {
            max_end = &n.1;
        }
    }
    !end_lt(max_end, &q.1) && min_begin <= &q.0
}

/// etcd's `isValidPermissionRange`.
fn valid_permission_range(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || key < range_end || range_end == [0])
}

impl AuthState {
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Users in name order (etcd lists its bucket in key order).
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    /// Whether a token issued to `user` at auth revision `issued` still
    /// stands: auth on since before it, the user's credentials unchanged.
    pub fn token_valid(&self, user: &str, issued: u64) -> bool {
        self.enabled
            && issued >= self.enabled_at
            && self.users.get(user).is_some_and(|u| u.since <= issued)
    }

    /// etcd's `IsAdminPermitted`.
    pub fn is_admin_permitted(&self, ai: &AuthInfo) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        if ai.user.is_empty() {
            return Err(EtcdError::UserEmpty);
        }
        match self.users.get(&ai.user) {
            None => Err(EtcdError::UserNotFound),
            Some(u) if !u.has_role(ROOT) => Err(EtcdError::PermissionDenied),
            Some(_) => Ok(()),
        }
    }

    /// etcd's `isOpPermitted` for `write` (else read) access to
    /// `[key, range_end)` (`range_end` empty: the key alone).
    fn is_op_permitted(
        &self,
        ai: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
        write: bool,
    ) -> Result<(), EtcdError> {
        if !self.enabled {
            return Ok(());
        }
        if ai.revision == 0 {
            return Err(EtcdError::UserEmpty);
        }
        if ai.revision < self.revision {
            return Err(EtcdError::AuthOldRevision);
        }
        let Some(user) = self.users.get(&ai.user) else {
            return Err(EtcdError::PermissionDenied);
        };
        if user.has_role(ROOT) {
            return Ok(());
        }
        let perms: Vec<(Vec<u8>, End)> = user
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .flat_map(|r| r.perms.iter())
            .filter(|p| {
                if write {
                    p.perm_type.writes()
                } else {
                    p.perm_type.reads()
                }
            })
            .map(|p| interval(&p.key, &p.range_end))
            .collect();
        let q = interval(key, range_end);
        let ok = if range_end.is_empty() {
            perms.iter().any(|n| intersects(&q, n))
        } else {
            covers(&perms, &q)
        };
        if ok {
            Ok(())
        } else {
            Err(EtcdError::PermissionDenied)
        }
    }

    pub fn is_range_permitted(
        &self,
        ai: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        self.is_op_permitted(ai, key, range_end, false)
    }

    pub fn is_put_permitted(&self, ai: &AuthInfo, key: &[u8]) -> Result<(), EtcdError> {
        self.is_op_permitted(ai, key, &[], true)
    }

    pub fn is_delete_range_permitted(
        &self,
        ai: &AuthInfo,
        key: &[u8],
        range_end: &[u8],
    ) -> Result<(), EtcdError> {
        self.is_op_permitted(ai, key, range_end, true)
    }

    /// Apply one change (the caller's admin permission already checked).
    fn apply(&mut self, op: &AuthOp) -> Result<(), EtcdError> {
        match op {
            AuthOp::Enable => {
                if self.enabled {
                    return Ok(());
                }
                let Some(root) = self.users.get(ROOT) else {
                    return Err(EtcdError::RootUserNotExist);
                };
                if !root.has_role(ROOT) {
                    return Err(EtcdError::RootRoleNotExist);
                }
                // Enabling keeps the revision (etcd's AuthEnable does not
                // commit one).
                self.enabled = true;
                self.enabled_at = self.revision;
                Ok(())
            }
            AuthOp::Disable => {
                if self.enabled {
                    self.enabled = false;
                    self.revision += 1;
                }
                Ok(())
            }
            AuthOp::UserAdd {
                name,
                password,
                no_password,
            } => {
                if name.is_empty() {
                    return Err(EtcdError::UserEmpty);
                }
                if self.users.contains_key(name) {
                    return Err(EtcdError::UserAlreadyExist);
                }
                let password = if *no_password {
                    Vec::new()
                } else {
                    password.clone().ok_or(EtcdError::NoPasswordUser)?
                };
                self.revision += 1;
                let user = User {
                    name: name.clone(),
                    password,
                    no_password: *no_password,
                    roles: Vec::new(),
                    since: self.revision,
                };
                self.users.insert(name.clone(), user);
                Ok(())
            }
            AuthOp::UserDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                if self.users.remove(name).is_none() {
                    return Err(EtcdError::UserNotFound);
                }
                self.revision += 1;
                Ok(())
            }
            AuthOp::UserChangePassword { name, password } => {
                let rev = self.revision + 1;
                let Some(user) = self.users.get_mut(name) else {
                    return Err(EtcdError::UserNotFound);
                };
                if !user.no_password {
                    user.password = password.clone().ok_or(EtcdError::NoPasswordUser)?;
                }
                user.since = rev;
                self.revision = rev;
                Ok(())
            }
            AuthOp::UserGrantRole { user, role } => {
                if !self.users.contains_key(user) {
                    return Err(EtcdError::UserNotFound);
                }
                // The root role may be granted before it exists as a role.
                if role != ROOT && !self.roles.contains_key(role) {
                    return Err(EtcdError::RoleNotFound);
                }
                let Some(u) = self.users.get_mut(user) else {
                    return Err(EtcdError::UserNotFound);
                };
                if let Err(i) = u.roles.binary_search(role) {
                    u.roles.insert(i, role.clone());
                    self.revision += 1;
                }
                Ok(())
            }
            AuthOp::UserRevokeRole { name, role } => {
                if self.enabled && name == ROOT && role == ROOT {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                let Some(u) = self.users.get_mut(name) else {
                    return Err(EtcdError::UserNotFound);
                };
                let before = u.roles.len();
                u.roles.retain(|r| r != role);
                if u.roles.len() == before {
                    return Err(EtcdError::RoleNotGranted);
                }
                self.revision += 1;
                Ok(())
            }
            AuthOp::RoleAdd { name } => {
                if name.is_empty() {
                    return Err(EtcdError::RoleEmpty);
                }
                if self.roles.contains_key(name) {
                    return Err(EtcdError::RoleAlreadyExist);
                }
                self.roles.insert(
                    name.clone(),
                    Role {
                        name: name.clone(),
                        perms: Vec::new(),
                    },
                );
                self.revision += 1;
                Ok(())
            }
            AuthOp::RoleDelete { name } => {
                if self.enabled && name == ROOT {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                if self.roles.remove(name).is_none() {
                    return Err(EtcdError::RoleNotFound);
                }
                for u in self.users.values_mut() {
                    u.roles.retain(|r| r != name);
                }
                self.revision += 1;
                Ok(())
            }
            AuthOp::RoleGrantPermission { name, perm } => {
                let Some(perm) = perm else {
                    return Err(EtcdError::PermissionNotGiven);
                };
                if !valid_permission_range(&perm.key, &perm.range_end) {
                    return Err(EtcdError::InvalidAuthMgmt);
                }
                let Some(role) = self.roles.get_mut(name) else {
                    return Err(EtcdError::RoleNotFound);
                };
                // etcd looks only at the first permission with a key not
                // below the new one's: same key and end → update its type.
                let idx = role.perms.partition_point(|p| p.key < perm.key);
                match role.perms.get_mut(idx) {
                    Some(p) if p.key == perm.key && p.range_end == perm.range_end => {
                        p.perm_type = perm.perm_type;
                    }
                    _ => {
                        role.perms.push(perm.clone());
                        role.perms.sort_by(|a, b| a.key.cmp(&b.key));
                    }
                }
                self.revision += 1;
                Ok(())
            }
            AuthOp::RoleRevokePermission {
                role,
                key,
                range_end,
            } => {
                let Some(r) = self.roles.get_mut(role) else {
                    return Err(EtcdError::RoleNotFound);
                };
                let before = r.perms.len();
                r.perms
                    .retain(|p| !(p.key == *key && p.range_end == *range_end));
                if r.perms.len() == before {
                    return Err(EtcdError::PermissionNotGranted);
                }
                self.revision += 1;
                Ok(())
            }
        }
    }

    pub(crate) fn check_invariants(&self) -> Result<(), String> {
        if self.revision == 0 || self.enabled_at > self.revision {
            return Err(format!(
                "auth revision {} enabled at {}",
                self.revision, self.enabled_at
            ));
        }
        if self.enabled && !self.users.get(ROOT).is_some_and(|u| u.has_role(ROOT)) {
            return Err("auth enabled without root user holding the root role".into());
        }
        for (name, u) in &self.users {
            if *name != u.name || name.is_empty() {
                return Err(format!("user {name:?} keyed wrong"));
            }
            if u.roles.windows(2).any(|w| w[0] >= w[1]) {
                return Err(format!("user {name}: roles not sorted {:?}", u.roles));
            }
            if let Some(r) = u
                .roles
                .iter()
                .find(|r| *r != ROOT && !self.roles.contains_key(*r))
            {
                return Err(format!("user {name}: role {r} missing"));
            }
            if u.since > self.revision {
                return Err(format!("user {name}: since {} in the future", u.since));
            }
        }
        for (name, r) in &self.roles {
            if *name != r.name || name.is_empty() {
                return Err(format!("role {name:?} keyed wrong"));
            }
            if r.perms.windows(2).any(|w| w[0].key > w[1].key) {
                return Err(format!("role {name}: permissions not sorted"));
            }
            if let Some(p) = r
                .perms
                .iter()
                .find(|p| !valid_permission_range(&p.key, &p.range_end))
            {
                return Err(format!("role {name}: invalid permission {p:?}"));
            }
        }
        Ok(())
    }
}

impl State {
    /// The auth store.
    pub fn auth(&self) -> &AuthState {
        &self.auth
    }

    /// etcd's `checkLeasePuts`: revoking a lease (or attaching a key to
    /// it) needs write access to every key already attached, unless the
    /// caller is an admin.
    pub fn check_lease_puts(&self, ai: &AuthInfo, lease: i64) -> Result<(), EtcdError> {
        if lease == 0 || self.lease(lease).is_none() {
            return Ok(());
        }
        if self.auth.is_admin_permitted(ai).is_ok() {
            return Ok(());
        }
        for k in self.lease_keys(lease) {
            self.auth.is_put_permitted(ai, &k)?;
        }
        Ok(())
    }

    /// etcd's `checkTxnAuth`: read on every compare, each op's own checks,
    /// both branches, nested txns too.
    pub fn check_txn_auth(&self, ai: &AuthInfo, t: &TxnRequest) -> Result<(), EtcdError> {
        for c in &t.compare {
            self.auth.is_range_permitted(ai, &c.key, &c.range_end)?;
        }
        for op in t.success.iter().chain(t.failure.iter()) {
            match op {
                RequestOp::Range(r) => self.auth.is_range_permitted(ai, &r.key, &r.range_end)?,
                RequestOp::Put(p) => self.check_put_auth(ai, p)?,
                RequestOp::DeleteRange(d) => {
                    if d.prev_kv {
                        self.auth.is_range_permitted(ai, &d.key, &d.range_end)?;
                    }
                    self.auth
                        .is_delete_range_permitted(ai, &d.key, &d.range_end)?;
                }
                RequestOp::Txn(t) => self.check_txn_auth(ai, t)?,
            }
        }
        Ok(())
    }

    fn check_put_auth(&self, ai: &AuthInfo, p: &crate::PutRequest) -> Result<(), EtcdError> {
        self.auth.is_put_permitted(ai, &p.key)?;
        self.check_lease_puts(ai, p.lease)?;
        if p.prev_kv {
            self.auth.is_range_permitted(ai, &p.key, &[])?;
        }
        Ok(())
    }

    /// What etcd's auth applier checks before applying `command` for `ai`.
    pub fn check_command_auth(&self, ai: &AuthInfo, command: &Command) -> Result<(), EtcdError> {
        match command {
            Command::Put(p) => self.check_put_auth(ai, p),
            Command::DeleteRange(d) => {
                self.auth
                    .is_delete_range_permitted(ai, &d.key, &d.range_end)?;
                if d.prev_kv {
                    self.auth.is_range_permitted(ai, &d.key, &d.range_end)?;
                }
                Ok(())
            }
            Command::Txn(t) => self.check_txn_auth(ai, t),
            Command::LeaseRevoke { id } => self.check_lease_puts(ai, *id),
            Command::Auth(_) => self.auth.is_admin_permitted(ai),
            _ => Ok(()),
        }
    }

    /// Apply an auth change proposed without credentials (checked as an
    /// anonymous caller, as etcd checks a request without a user).
    pub(crate) fn auth_apply(
        &mut self,
        ai: &AuthInfo,
        op: &AuthOp,
    ) -> Result<EtcdResponse, EtcdError> {
        self.auth.is_admin_permitted(ai)?;
        self.auth.apply(op).map(|()| EtcdResponse::Auth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{Compare, CompareResult, CompareTarget, Proposal, PutRequest, Response};
    use proptest::prelude::*;

    fn root() -> AuthInfo {
        AuthInfo {
            user: ROOT.into(),
            revision: u64::MAX,
        }
    }

    fn auth(s: &mut State, ai: &AuthInfo, op: AuthOp) -> Result<(), EtcdError> {
        let (a, ev) = s.apply(&Proposal {
            time_ms: 0,
            command: Command::AsUser {
                user: ai.user.clone(),
                auth_revision: ai.revision,
                command: Box::new(Command::Auth(op)),
            },
        });
        assert!(ev.events.is_empty());
        s.check_invariants().unwrap();
        match a.response {
            Response::Etcd(Ok(EtcdResponse::Auth)) => Ok(()),
            Response::Etcd(Err(e)) => Err(e),
            r => panic!("{r:?}"),
        }
    }

    fn perm(t: PermType, key: &str, end: &str) -> Permission {
        Permission {
            perm_type: t,
            key: key.into(),
            range_end: end.into(),
        }
    }

    fn setup() -> State {
        let mut s = State::new();
        let anon = AuthInfo::default();
        let pw = Some(b"$2a$10$hash".to_vec());
        for name in [ROOT, "alice"] {
            auth(
                &mut s,
                &anon,
                AuthOp::UserAdd {
                    name: name.into(),
                    password: pw.clone(),
                    no_password: false,
                },
            )
            .unwrap();
        }
        auth(&mut s, &anon, AuthOp::RoleAdd { name: "r".into() }).unwrap();
        for p in [
            perm(PermType::ReadWrite, "/a", "/b"),
            perm(PermType::Read, "/b", ""),
            perm(PermType::Write, "/c", "/d"),
            perm(PermType::Read, "/z", "\0"),
        ] {
            auth(
                &mut s,
                &anon,
                AuthOp::RoleGrantPermission {
                    name: "r".into(),
                    perm: Some(p),
                },
            )
            .unwrap();
        }
        auth(
            &mut s,
            &anon,
            AuthOp::UserGrantRole {
                user: "alice".into(),
                role: "r".into(),
            },
        )
        .unwrap();
        assert_eq!(
            auth(&mut s, &anon, AuthOp::Enable),
            Err(EtcdError::RootRoleNotExist)
        );
        auth(
            &mut s,
            &anon,
            AuthOp::UserGrantRole {
                user: ROOT.into(),
                role: ROOT.into(),
            },
        )
        .unwrap();
        auth(&mut s, &anon, AuthOp::Enable).unwrap();
        s
    }

    #[test]
    fn enable_needs_root_and_admin_rules() {
        let mut s = State::new();
        assert_eq!(s.auth().revision(), 1);
        let anon = AuthInfo::default();
        assert_eq!(
            auth(&mut s, &anon, AuthOp::Enable),
            Err(EtcdError::RootUserNotExist)
        );
        let mut s = setup();
        let rev = s.auth().revision();
        assert!(s.auth().enabled());
        // Enabled: anonymous and non-root callers are refused.
        assert_eq!(
            auth(&mut s, &anon, AuthOp::RoleAdd { name: "x".into() }),
            Err(EtcdError::UserEmpty)
        );
        let alice = AuthInfo {
            user: "alice".into(),
            revision: rev,
        };
        assert_eq!(
            auth(&mut s, &alice, AuthOp::RoleAdd { name: "x".into() }),
            Err(EtcdError::PermissionDenied)
        );
        let ghost = AuthInfo {
            user: "ghost".into(),
            revision: rev,
        };
        assert_eq!(
            auth(&mut s, &ghost, AuthOp::Disable),
            Err(EtcdError::UserNotFound)
        );
        // Root's protections while enabled.
        assert_eq!(
            auth(&mut s, &root(), AuthOp::UserDelete { name: ROOT.into() }),
            Err(EtcdError::InvalidAuthMgmt)
        );
        assert_eq!(
            auth(
                &mut s,
                &root(),
                AuthOp::UserRevokeRole {
                    name: ROOT.into(),
                    role: ROOT.into()
                }
            ),
            Err(EtcdError::InvalidAuthMgmt)
        );
        assert_eq!(
            auth(&mut s, &root(), AuthOp::RoleDelete { name: ROOT.into() }),
            Err(EtcdError::InvalidAuthMgmt)
        );
        assert_eq!(s.auth().revision(), rev, "failures do not bump");
        // Granting a held role is a no-op without a bump.
        auth(
            &mut s,
            &root(),
            AuthOp::UserGrantRole {
                user: "alice".into(),
                role: "r".into(),
            },
        )
        .unwrap();
        assert_eq!(s.auth().revision(), rev);
        auth(&mut s, &root(), AuthOp::Disable).unwrap();
        assert_eq!(s.auth().revision(), rev + 1);
        auth(&mut s, &anon, AuthOp::Disable).unwrap();
        assert_eq!(s.auth().revision(), rev + 1, "disabling twice is a no-op");
    }

    #[test]
    fn range_permissions_as_etcd() {
        let s = setup();
        let a = AuthInfo {
            user: "alice".into(),
            revision: s.auth().revision(),
        };
        let au = s.auth();
        assert_eq!(au.is_put_permitted(&a, b"/a/1"), Ok(()));
        assert_eq!(au.is_range_permitted(&a, b"/a", b"/b"), Ok(()));
        assert_eq!(
            au.is_range_permitted(&a, b"/a", b"/b\0"),
            Ok(()),
            "/b is readable too"
        );
        assert_eq!(
            au.is_range_permitted(&a, b"/a", b"/b\0\0"),
            Err(EtcdError::PermissionDenied)
        );
        assert_eq!(au.is_range_permitted(&a, b"/b", b""), Ok(()));
        assert_eq!(
            au.is_put_permitted(&a, b"/b"),
            Err(EtcdError::PermissionDenied)
        );
        assert_eq!(au.is_put_permitted(&a, b"/c1"), Ok(()));
        assert_eq!(
            au.is_range_permitted(&a, b"/c1", b""),
            Err(EtcdError::PermissionDenied)
        );
        assert_eq!(au.is_range_permitted(&a, b"/z", b"\0"), Ok(()));
        assert_eq!(au.is_range_permitted(&a, b"/zz", b"\0"), Ok(()));
        assert_eq!(
            au.is_range_permitted(&a, b"/y", b"\0"),
            Err(EtcdError::PermissionDenied)
        );
        assert_eq!(
            au.is_range_permitted(&a, b"\0", b"\0"),
            Err(EtcdError::PermissionDenied)
        );
        assert_eq!(
            au.is_range_permitted(&AuthInfo::default(), b"/a", b""),
            Err(EtcdError::UserEmpty)
        );
        let old = AuthInfo {
            revision: 1,
            ..a.clone()
        };
        assert_eq!(
            au.is_range_permitted(&old, b"/a", b""),
            Err(EtcdError::AuthOldRevision)
        );
        assert_eq!(au.is_range_permitted(&root(), b"\0", b"\0"), Ok(()));
    }

    #[test]
    fn writes_as_user_are_checked_at_apply() {
        let mut s = setup();
        let rev = s.auth().revision();
        let as_alice = |c: Command| Command::AsUser {
            user: "alice".into(),
            auth_revision: rev,
            command: Box::new(c),
        };
        let put = |k: &str| {
            Command::Put(PutRequest {
                key: k.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })
        };
        let run = |s: &mut State, c: Command| {
            let (a, _) = s.apply(&Proposal {
                time_ms: 0,
                command: c,
            });
            s.check_invariants().unwrap();
            a
        };
        let a = run(&mut s, as_alice(put("/a/1")));
        assert!(matches!(a.response, Response::Etcd(Ok(_))));
        assert_eq!(a.revision, 2);
        let a = run(&mut s, as_alice(put("/b")));
        assert_eq!(a.response, Response::Etcd(Err(EtcdError::PermissionDenied)));
        assert_eq!(a.revision, 2, "a refused write takes no revision");
        // A txn whose compare reads an unreadable key is refused.
        let t = Command::Txn(TxnRequest {
            compare: vec![Compare {
                result: CompareResult::Equal,
                target: CompareTarget::Version(0),
                key: b"/c1".to_vec(),
                range_end: vec![],
            }],
            success: vec![RequestOp::Put(PutRequest {
                key: b"/a/2".to_vec(),
                ..Default::default()
            })],
            failure: vec![],
        });
        let a = run(&mut s, as_alice(t));
        assert_eq!(a.response, Response::Etcd(Err(EtcdError::PermissionDenied)));
        // Revoking a lease with a key alice cannot write is refused.
        run(
            &mut s,
            Command::LeaseGrant {
                id: 9,
                ttl_secs: 60,
            },
        );
        run(
            &mut s,
            Command::Put(PutRequest {
                key: b"/q".to_vec(),
                lease: 9,
                ..Default::default()
            }),
        );
        let a = run(&mut s, as_alice(Command::LeaseRevoke { id: 9 }));
        assert_eq!(a.response, Response::Etcd(Err(EtcdError::PermissionDenied)));
        // So is attaching a key to it.
        let a = run(
            &mut s,
            as_alice(Command::Put(PutRequest {
                key: b"/a/3".to_vec(),
                lease: 9,
                ..Default::default()
            })),
        );
        assert_eq!(a.response, Response::Etcd(Err(EtcdError::PermissionDenied)));
        // Any auth change makes alice's checked revision old.
        auth(&mut s, &root(), AuthOp::RoleAdd { name: "r2".into() }).unwrap();
        let a = run(&mut s, as_alice(put("/a/1")));
        assert_eq!(a.response, Response::Etcd(Err(EtcdError::AuthOldRevision)));
    }

    #[test]
    fn tokens_die_with_password_change_delete_and_disable() {
        let mut s = setup();
        let r = s.auth().revision();
        assert!(s.auth().token_valid("alice", r));
        auth(
            &mut s,
            &root(),
            AuthOp::RoleAdd {
                name: "other".into(),
            },
        )
        .unwrap();
        assert!(s.auth().token_valid("alice", r), "role changes keep tokens");
        auth(
            &mut s,
            &root(),
            AuthOp::UserChangePassword {
                name: "alice".into(),
                password: Some(b"new".to_vec()),
            },
        )
        .unwrap();
        assert!(!s.auth().token_valid("alice", r));
        let r = s.auth().revision();
        assert!(s.auth().token_valid("alice", r));
        auth(&mut s, &root(), AuthOp::Disable).unwrap();
        assert!(!s.auth().token_valid("alice", r));
        auth(&mut s, &AuthInfo::default(), AuthOp::Enable).unwrap();
        assert!(!s.auth().token_valid("alice", r));
        assert!(s.auth().token_valid("alice", s.auth().revision()));
    }

    #[test]
    fn role_and_user_management_errors() {
        let mut s = State::new();
        let a = AuthInfo::default();
        assert_eq!(
            auth(&mut s, &a, AuthOp::RoleAdd { name: "".into() }),
            Err(EtcdError::RoleEmpty)
        );
        assert_eq!(
            auth(
                &mut s,
                &a,
                AuthOp::UserAdd {
                    name: "".into(),
                    password: None,
                    no_password: true
                }
            ),
            Err(EtcdError::UserEmpty)
        );
        assert_eq!(
            auth(
                &mut s,
                &a,
                AuthOp::UserAdd {
                    name: "u".into(),
                    password: None,
                    no_password: false
                }
            ),
            Err(EtcdError::NoPasswordUser)
        );
        auth(
            &mut s,
            &a,
            AuthOp::UserAdd {
                name: "u".into(),
                password: None,
                no_password: true,
            },
        )
        .unwrap();
        assert_eq!(
            auth(
                &mut s,
                &a,
                AuthOp::UserAdd {
                    name: "u".into(),
                    password: None,
                    no_password: true
                }
            ),
            Err(EtcdError::UserAlreadyExist)
        );
        auth(&mut s, &a, AuthOp::RoleAdd { name: "r".into() }).unwrap();
        assert_eq!(
            auth(&mut s, &a, AuthOp::RoleAdd { name: "r".into() }),
            Err(EtcdError::RoleAlreadyExist)
        );
        assert_eq!(
            auth(
                &mut s,
                &a,
                AuthOp::RoleGrantPermission {
                    name: "r".into(),
                    perm: None
                }
            ),
            Err(EtcdError::PermissionNotGiven)
        );
        assert_eq!(
            auth(
                &mut s,
                &a,
                AuthOp::RoleGrantPermission {
                    name: "r".into(),
                    perm: Some(perm(PermType::Read, "b", "a"))
                }
            ),
            Err(EtcdError::InvalidAuthMgmt)
        );
        assert_eq!(
            auth(
                &mut s,
                &a,
                AuthOp::RoleGrantPermission {
                    name: "nope".into(),
                    perm: Some(perm(PermType::Read, "a", ""))
                }
            ),
            Err(EtcdError::RoleNotFound)
        );
        auth(
            &mut s,
            &a,
            AuthOp::RoleGrantPermission {
                name: "r".into(),
                perm: Some(perm(PermType::Read, "a", "")),
            },
        )
        .unwrap();
        // Same key and end: the type is updated in place.
        auth(
            &mut s,
            &a,
            AuthOp::RoleGrantPermission {
                name: "r".into(),
                perm: Some(perm(PermType::Write, "a", "")),
            },
        )
        .unwrap();
        assert_eq!(
            s.auth().role("r").unwrap().perms,
            vec![perm(PermType::Write, "a", "")]
        );
        assert_eq!(
            auth(
                &mut s,
                &a,
                AuthOp::RoleRevokePermission {
                    role: "r".into(),
                    key: b"a".to_vec(),
                    range_end: b"b".to_vec()
                }
            ),
            Err(EtcdError::PermissionNotGranted)
        );
        assert_eq!(
            auth(
                &mut s,
                &a,
                AuthOp::UserRevokeRole {
                    name: "u".into(),
                    role: "r".into()
                }
            ),
            Err(EtcdError::RoleNotGranted)
        );
        assert_eq!(
            auth(
                &mut s,
                &a,
                AuthOp::UserGrantRole {
                    user: "u".into(),
                    role: "nope".into()
                }
            ),
            Err(EtcdError::RoleNotFound)
        );
        assert_eq!(
            auth(
                &mut s,
                &a,
                AuthOp::UserGrantRole {
                    user: "nope".into(),
                    role: "r".into()
                }
            ),
            Err(EtcdError::UserNotFound)
        );
        auth(
            &mut s,
            &a,
            AuthOp::UserGrantRole {
                user: "u".into(),
                role: "r".into(),
            },
        )
        .unwrap();
        // Deleting a role takes it from its users.
        auth(&mut s, &a, AuthOp::RoleDelete { name: "r".into() }).unwrap();
        assert!(s.auth().user("u").unwrap().roles.is_empty());
        assert_eq!(
            auth(&mut s, &a, AuthOp::RoleDelete { name: "r".into() }),
            Err(EtcdError::RoleNotFound)
        );
        assert_eq!(
            auth(&mut s, &a, AuthOp::UserDelete { name: "x".into() }),
            Err(EtcdError::UserNotFound)
        );
    }

    // ------------------------------------------------------- properties

    const KEYS: &[&[u8]] = &[
        b"a", b"ab", b"abc", b"b", b"ba", b"c", b"\0", b"\xff", b"a\0",
    ];
    const ENDS: &[&[u8]] = &[b"", b"\0", b"ab", b"b", b"c", b"d", b"\xff", b"a\0"];

    fn arb_perm() -> impl Strategy<Value = Permission> {
        (
            prop::sample::select(vec![PermType::Read, PermType::Write, PermType::ReadWrite]),
            prop::sample::select(KEYS.to_vec()),
            prop::sample::select(ENDS.to_vec()),
        )
            .prop_map(|(t, k, e)| Permission {
                perm_type: t,
                key: k.to_vec(),
                range_end: e.to_vec(),
            })
    }

    /// Independent of the interval walk: a non-empty `[b, e)` is covered
    /// by a union of half-open intervals iff `b` and every interval end
    /// inside `(b, e)` lie in some interval.
    fn covered_brute(perms: &[(Vec<u8>, End)], q: &(Vec<u8>, End)) -> bool {
        let inside = |x: &Vec<u8>| {
            perms
                .iter()
                .any(|(b, e)| b <= x && end_lt(&Some(x.clone()), e))
        };
        let mut points = vec![q.0.clone()];
        for (_, e) in perms {
            if let Some(e) = e {
                if *e > q.0 && end_lt(&Some(e.clone()), &q.1) {
                    points.push(e.clone());
                }
            }
        }
        points.iter().all(inside)
    }

    fn arb_op() -> impl Strategy<Value = AuthOp> {
        let name = || prop::sample::select(vec!["root", "u", "v", ""]).prop_map(String::from);
        prop_oneof![
            Just(AuthOp::Enable),
            Just(AuthOp::Disable),
            (name(), any::<bool>(), any::<bool>()).prop_map(|(n, np, ok)| AuthOp::UserAdd {
                name: n,
                password: ok.then(|| b"h".to_vec()),
                no_password: np
            }),
            name().prop_map(|n| AuthOp::UserDelete { name: n }),
            (name(), any::<bool>()).prop_map(|(n, ok)| AuthOp::UserChangePassword {
                name: n,
                password: ok.then(|| b"h2".to_vec())
            }),
            (name(), name()).prop_map(|(u, r)| AuthOp::UserGrantRole { user: u, role: r }),
            (name(), name()).prop_map(|(u, r)| AuthOp::UserRevokeRole { name: u, role: r }),
            name().prop_map(|n| AuthOp::RoleAdd { name: n }),
            name().prop_map(|n| AuthOp::RoleDelete { name: n }),
            (name(), prop::option::of(arb_perm()))
                .prop_map(|(n, p)| AuthOp::RoleGrantPermission { name: n, perm: p }),
            (name(), arb_perm()).prop_map(|(n, p)| AuthOp::RoleRevokePermission {
                role: n,
                key: p.key,
                range_end: p.range_end
            }),
        ]
    }

    proptest! {
        #[test]
        fn interval_cover_matches_brute_force(
            perms in prop::collection::vec(arb_perm(), 0..6),
            key in prop::sample::select(KEYS.to_vec()),
            end in prop::sample::select(ENDS.to_vec()),
        ) {
            let ivs: Vec<(Vec<u8>, End)> = perms.iter().map(|p| interval(&p.key, &p.range_end)).collect();
            let q = interval(key, end);
            // Only non-empty queries: an inverted range reads nothing.
            prop_assume!(end_lt(&Some(q.0.clone()), &q.1));
            prop_assert_eq!(covers(&ivs, &q), covered_brute(&ivs, &q));
        }

        #[test]
        fn auth_ops_are_deterministic_and_keep_invariants(
            ops in prop::collection::vec((any::<bool>(), arb_op()), 0..40)
        ) {
            let mut a = State::new();
            let mut b = State::new();
            for (as_root, op) in &ops {
                let ai = if *as_root { root() } else { AuthInfo::default() };
                let before = a.auth().revision();
                let ra = auth(&mut a, &ai, op.clone());
                let rb = auth(&mut b, &ai, op.clone());
                prop_assert_eq!(&ra, &rb);
                prop_assert!(a.auth().revision() >= before);
                if ra.is_err() {
                    prop_assert_eq!(a.auth().revision(), before);
                }
                prop_assert_eq!(a.revision(), 1, "auth changes take no revision");
            }
            prop_assert_eq!(a.dump(), b.dump());
            // The auth store survives a reopen of its tables.
            let back = State::open(a.db.base().clone()).unwrap();
            prop_assert_eq!(back.dump(), a.dump());
        }
    }
}
