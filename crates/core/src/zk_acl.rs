//! ZooKeeper's ACL check (`ZooKeeperServer.checkACL` with the world, auth,
//! digest, ip, x509 and sasl providers' `matches`), pure so that the state
//! machine can apply it where PrepRequestProcessor does: against the state
//! every earlier txn left, at the txn's place in the log.

use std::net::IpAddr;

use crate::error::ZkError;
use crate::zk::{Acl, Id};

/// `Ok` if a caller with `ids` has `perm` on a node whose ACL is `acl`.
/// An empty ACL, or a `super` id, allows everything.
pub fn check_acl(ids: &[Id], acl: &[Acl], perm: i32) -> Result<(), ZkError> {
    if acl.is_empty() || ids.iter().any(|i| i.scheme == "super") {
        return Ok(());
    }
    for a in acl {
        if a.perms & perm == 0 {
            continue;
        }
        if a.id.scheme == "world" && a.id.id == "anyone" {
            return Ok(());
        }
        for mine in ids {
            if mine.scheme == a.id.scheme && matches(&a.id.scheme, &mine.id, &a.id.id) {
                return Ok(());
            }
        }
    }
    Err(ZkError::NoAuth)
}

/// An `ip` ACL expression: an address with an optional prefix length.
pub fn parse_ip_acl(expr: &str) -> Option<(IpAddr, u32)> {
    let (addr, bits) = match expr.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u32>().ok()?)),
        None => (expr, None),
    };
    let ip: IpAddr = addr.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    if bits > max {
        return None;
    }
    Some((ip, bits))
}

/// A provider's `matches(id, aclExpr)`.
fn matches(scheme: &str, mine: &str, acl_id: &str) -> bool {
    match scheme {
        // SASLAuthenticationProvider: a user named "super" matches any
        // sasl ACL (ZooKeeper's rule, kept as is).
        "sasl" => mine == "super" || mine == acl_id,
        "ip" => {
            let (Some((net, bits)), Ok(me)) = (parse_ip_acl(acl_id), mine.parse::<IpAddr>()) else {
                return false;
            };
            match (net, me) {
                (IpAddr::V4(n), IpAddr::V4(m)) => prefix_eq(&n.octets(), &m.octets(), bits),
                (IpAddr::V6(n), IpAddr::V6(m)) => prefix_eq(&n.octets(), &m.octets(), bits),
                _ => false,
            }
        }
        _ => mine == acl_id,
    }
}

fn prefix_eq(a: &[u8], b: &[u8], bits: u32) -> bool {
    let mut left = bits as usize;
    for (x, y) in a.iter().zip(b) {
        if left == 0 {
            return true;
        }
        let take = left.min(8);
        let mask = if take == 8 { 0xff } else { !(0xffu8 >> take) };
        if x & mask != y & mask {
            return false;
        }
        left -= take;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::zk::perms;

    fn id(scheme: &str, id: &str) -> Id {
        Id {
            scheme: scheme.into(),
            id: id.into(),
        }
    }
    fn acl(perms: i32, scheme: &str, i: &str) -> Acl {
        Acl {
            perms,
            id: id(scheme, i),
        }
    }

    #[test]
    fn world_super_and_perm_bits() {
        let a = [acl(perms::READ, "world", "anyone")];
        assert_eq!(check_acl(&[], &a, perms::READ), Ok(()));
        assert_eq!(check_acl(&[], &a, perms::WRITE), Err(ZkError::NoAuth));
        assert_eq!(check_acl(&[id("super", "x")], &a, perms::WRITE), Ok(()));
        assert_eq!(check_acl(&[], &[], perms::ADMIN), Ok(()));
    }

    #[test]
    fn ip_prefixes_and_sasl_super() {
        let a = [acl(perms::ALL, "ip", "10.1.0.0/16")];
        assert_eq!(check_acl(&[id("ip", "10.1.2.3")], &a, perms::READ), Ok(()));
        assert_eq!(
            check_acl(&[id("ip", "10.2.2.3")], &a, perms::READ),
            Err(ZkError::NoAuth)
        );
        let s = [acl(perms::ALL, "sasl", "alice")];
        assert_eq!(check_acl(&[id("sasl", "super")], &s, perms::READ), Ok(()));
        assert_eq!(
            check_acl(&[id("sasl", "bob")], &s, perms::READ),
            Err(ZkError::NoAuth)
        );
        assert_eq!(parse_ip_acl("1.2.3.4/33"), None);
    }
}
