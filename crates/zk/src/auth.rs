//! Authentication schemes and ACL checks, as ZooKeeper's
//! `ZooKeeperServer.checkACL`, `PrepRequestProcessor.fixupACL` and the
//! world/auth/digest/ip providers do them.

use std::net::IpAddr;

use base64::Engine;
use janus_core::zk::perms;
use janus_core::zk_acl::parse_ip_acl;
use janus_core::{Acl, Id, ZkError};
use sha1::{Digest, Sha1};

/// `DigestAuthenticationProvider.generateDigest`: `user:` + base64(sha1(`user:password`)).
pub fn digest(user_password: &str) -> String {
    let user = user_password.split(':').next().unwrap_or("");
    let hash = Sha1::digest(user_password.as_bytes());
    format!(
        "{user}:{}",
        base64::engine::general_purpose::STANDARD.encode(hash)
    )
}

/// The identities a connection has proven.
#[derive(Debug, Clone, Default)]
pub struct AuthInfo {
    pub ids: Vec<Id>,
}

impl AuthInfo {
    /// A new connection from `addr`: it has `ip:<addr>` (not "authenticated").
    pub fn for_peer(addr: Option<IpAddr>) -> AuthInfo {
        let ids = addr
            .map(|a| {
                vec![Id {
                    scheme: "ip".into(),
                    id: canonical_ip(a),
                }]
            })
            .unwrap_or_default();
        AuthInfo { ids }
    }

    pub fn is_super(&self) -> bool {
        self.ids.iter().any(|i| i.scheme == "super")
    }

    pub fn add(&mut self, id: Id) {
        if !self.ids.contains(&id) {
            self.ids.push(id);
        }
    }

    /// An AuthPacket: `Ok` adds ids, `Err` is AUTHFAILED (the connection closes).
    pub fn authenticate(
        &mut self,
        scheme: &str,
        auth: &[u8],
        super_digest: Option<&str>,
    ) -> Result<(), ZkError> {
        match scheme {
            "digest" => {
                let up = std::str::from_utf8(auth).map_err(|_| ZkError::AuthFailed)?;
                let d = digest(up);
                if super_digest == Some(d.as_str()) {
                    self.add(Id {
                        scheme: "super".into(),
                        id: d.split(':').next().unwrap_or("").into(),
                    });
                }
                self.add(Id {
                    scheme: "digest".into(),
                    id: d,
                });
                Ok(())
            }
            // IPAuthenticationProvider.handleAuthentication: the peer address
            // is already known; nothing to add.
            "ip" => Ok(()),
            _ => Err(ZkError::AuthFailed),
        }
    }

    /// `checkACL`: `Ok` if the connection has `perm` on a node with `acl`.
    pub fn check(&self, acl: &[Acl], perm: i32) -> Result<(), ZkError> {
        janus_core::zk_acl::check_acl(&self.ids, acl, perm)
    }

    /// `fixupACL`: validate an ACL list from a client and expand `auth`
    /// entries into the connection's authenticated ids; duplicates removed.
    pub fn fixup(&self, acl: &[Acl]) -> Result<Vec<Acl>, ZkError> {
        if acl.is_empty() {
            return Err(ZkError::InvalidAcl);
        }
        let mut out: Vec<Acl> = Vec::new();
        let mut push = |a: Acl| {
            if !out.contains(&a) {
                out.push(a);
            }
        };
        for a in acl {
            match a.id.scheme.as_str() {
                "world" => {
                    if a.id.id != "anyone" {
                        return Err(ZkError::InvalidAcl);
                    }
                    push(a.clone());
                }
                "auth" => {
                    // Only providers that authenticate (not ip) count.
                    let mut any = false;
                    for mine in self
                        .java_order()
                        .into_iter()
                        .filter(|i| i.scheme != "ip" && i.scheme != "super")
                    {
                        any = true;
                        push(Acl {
                            perms: a.perms,
                            id: mine.clone(),
                        });
                    }
                    if !any {
                        return Err(ZkError::InvalidAcl);
                    }
                }
                "digest" => {
                    if a.id.id.split(':').count() != 2 {
                        return Err(ZkError::InvalidAcl);
                    }
                    push(a.clone());
                }
                "ip" => {
                    if parse_ip_acl(&a.id.id).is_none() {
                        return Err(ZkError::InvalidAcl);
                    }
                    push(a.clone());
                }
                // Janus always has the providers ZooKeeper loads with
                // `authProvider.x509` / `authProvider.sasl`.
                "x509" => {
                    if !crate::x509::valid_dn(&a.id.id) {
                        return Err(ZkError::InvalidAcl);
                    }
                    push(a.clone());
                }
                "sasl" => {
                    if !valid_kerberos_name(&a.id.id) {
                        return Err(ZkError::InvalidAcl);
                    }
                    push(a.clone());
                }
                _ => return Err(ZkError::InvalidAcl),
            }
        }
        Ok(out)
    }

    /// getACL without ADMIN: digest ids are masked (ZooKeeper 3.9).
    pub fn mask_for_get_acl(&self, acl: &[Acl], node_acl_admin: bool) -> Vec<Acl> {
        if node_acl_admin {
            return acl.to_vec();
        }
        acl.iter()
            .map(|a| {
                if a.id.scheme == "digest" {
                    let user = a.id.id.split(':').next().unwrap_or("");
                    Acl {
                        perms: a.perms,
                        id: Id {
                            scheme: "digest".into(),
                            id: format!("{user}:x"),
                        },
                    }
                } else {
                    a.clone()
                }
            })
            .collect()
    }

    /// whoAmI: (scheme, user) per id; digest shows the user name only.
    pub fn client_info(&self) -> Vec<(String, String)> {
        self.java_order()
            .into_iter()
            .map(|i| {
                let user = if i.scheme == "digest" {
                    i.id.split(':').next().unwrap_or("").to_string()
                } else {
                    i.id.clone()
                };
                (i.scheme.clone(), user)
            })
            .collect()
    }
}

impl AuthInfo {
    /// The ids in the order ZooKeeper iterates a connection's `authInfo`
    /// (a `ConcurrentHashMap` key set): by hash bin, then insertion. whoAmI
    /// and `auth` ACL expansion show that order, and clients see it.
    fn java_order(&self) -> Vec<&Id> {
        let mut n: usize = 16;
        // The map doubles when it reaches 3/4 full.
        while self.ids.len() >= n * 3 / 4 {
            n *= 2;
        }
        let mut v: Vec<(usize, &Id)> = self
            .ids
            .iter()
            .map(|i| {
                // jute's Id.hashCode, then ConcurrentHashMap.spread.
                let h = 37i32
                    .wrapping_mul(37i32.wrapping_mul(17).wrapping_add(java_hash(&i.scheme)))
                    .wrapping_add(java_hash(&i.id)) as u32;
                let spread = (h ^ (h >> 16)) & 0x7fff_ffff;
                (spread as usize & (n - 1), i)
            })
            .collect();
        v.sort_by_key(|(bin, _)| *bin);
        v.into_iter().map(|(_, i)| i).collect()
    }
}

/// Java's `String.hashCode` (over UTF-16 code units).
fn java_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, u| h.wrapping_mul(31).wrapping_add(i32::from(u)))
}

fn canonical_ip(a: IpAddr) -> String {
    match a {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_else(|| v6.to_string()),
        IpAddr::V4(v4) => v4.to_string(),
    }
}

/// `SASLAuthenticationProvider.isValid`: `new KerberosName(id)` accepts
/// `primary[/instance]@REALM` or anything without `@`.
fn valid_kerberos_name(id: &str) -> bool {
    match id.split_once('@') {
        None => true,
        Some((left, realm)) => !realm.contains(['/', '@']) && left.matches('/').count() <= 1,
    }
}

/// Perms needed on a node's ACL for getACL (either).
pub const GET_ACL_PERMS: i32 = perms::READ | perms::ADMIN;

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(perms: i32, scheme: &str, id: &str) -> Acl {
        Acl {
            perms,
            id: Id {
                scheme: scheme.into(),
                id: id.into(),
            },
        }
    }

    #[test]
    fn digest_matches_zookeeper() {
        // From ZooKeeper's documentation/tests: super:test.
        assert_eq!(digest("super:test"), "super:D/InIHSb7yEEbrWz8b9l71RjZJU=");
    }

    #[test]
    fn checks_and_fixups() {
        let mut me = AuthInfo::for_peer(Some("127.0.0.1".parse().unwrap()));
        assert_eq!(
            me.check(&[acl(perms::READ, "ip", "127.0.0.0/8")], perms::READ),
            Ok(())
        );
        assert_eq!(
            me.check(&[acl(perms::READ, "ip", "10.0.0.0/8")], perms::READ),
            Err(ZkError::NoAuth)
        );
        assert_eq!(me.fixup(&[acl(31, "auth", "")]), Err(ZkError::InvalidAcl));
        me.authenticate("digest", b"bob:pw", None).unwrap();
        let fixed = me.fixup(&[acl(31, "auth", "")]).unwrap();
        assert_eq!(fixed, vec![acl(31, "digest", &digest("bob:pw"))]);
        assert_eq!(me.check(&fixed, perms::WRITE), Ok(()));
        let other = AuthInfo::default();
        assert_eq!(other.check(&fixed, perms::WRITE), Err(ZkError::NoAuth));
        assert_eq!(other.check(&[], perms::WRITE), Ok(()));
        assert_eq!(
            me.fixup(&[acl(31, "world", "someone")]),
            Err(ZkError::InvalidAcl)
        );
        assert_eq!(me.fixup(&[acl(31, "bogus", "x")]), Err(ZkError::InvalidAcl));
        assert!(me.authenticate("kerberos", b"", None).is_err());
        let mut su = AuthInfo::default();
        su.authenticate(
            "digest",
            b"super:test",
            Some("super:D/InIHSb7yEEbrWz8b9l71RjZJU="),
        )
        .unwrap();
        assert!(su.is_super());
        // x509 and sasl ids and ACLs.
        let mut tls = AuthInfo::default();
        tls.add(Id {
            scheme: "x509".into(),
            id: "CN=client,O=Acme".into(),
        });
        let x = acl(perms::READ, "x509", "CN=client,O=Acme");
        assert_eq!(tls.fixup(&[x.clone()]), Ok(vec![x.clone()]));
        assert_eq!(tls.check(&[x.clone()], perms::READ), Ok(()));
        assert_eq!(me.check(&[x], perms::READ), Err(ZkError::NoAuth));
        assert_eq!(
            tls.fixup(&[acl(31, "x509", "client")]),
            Err(ZkError::InvalidAcl)
        );
        assert_eq!(
            tls.fixup(&[acl(31, "auth", "")]),
            Ok(vec![acl(31, "x509", "CN=client,O=Acme")])
        );
        let mut sasl = AuthInfo::default();
        sasl.add(Id {
            scheme: "sasl".into(),
            id: "bob".into(),
        });
        let s = acl(perms::READ, "sasl", "bob");
        assert_eq!(sasl.check(&[s.clone()], perms::READ), Ok(()));
        assert_eq!(tls.check(&[s.clone()], perms::READ), Err(ZkError::NoAuth));
        assert_eq!(
            sasl.fixup(&[acl(31, "sasl", "a@B@C")]),
            Err(ZkError::InvalidAcl)
        );
        assert!(sasl.fixup(&[acl(31, "sasl", "zk/host@REALM")]).is_ok());
        // whoAmI order as real ZooKeeper 3.8 showed it for these ids.
        let mut both = AuthInfo::for_peer(Some("127.0.0.1".parse().unwrap()));
        both.add(Id {
            scheme: "x509".into(),
            id: "CN=client,OU=zk,O=Acme\\, Inc.,C=US".into(),
        });
        both.add(Id {
            scheme: "sasl".into(),
            id: "bob".into(),
        });
        let schemes: Vec<String> = both.client_info().into_iter().map(|(s, _)| s).collect();
        assert_eq!(schemes, ["x509", "sasl", "ip"]);
        assert_eq!(su.check(&fixed, perms::ADMIN), Ok(()));
    }
}
