//! Host names in addresses. Listen addresses are resolved here, once, at
//! start; advertised addresses (the peer address in the membership, the
//! client URLs and ZooKeeper address a member publishes) keep the name as
//! given, and whoever dials them resolves it.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use anyhow::{bail, Context};

/// The address to bind for `host:port`: a literal IP as it is; a host name
/// resolved, taking its first IPv4 address (else its first address), as
/// etcd's listeners (Go's `net.Listen`) and ZooKeeper's
/// (`InetAddress.getByName`) pick one.
pub fn bind_addr(hostport: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(a) = hostport.parse::<SocketAddr>() {
        return Ok(a);
    }
    let (host, port) = split_host_port(hostport)?;
    port.parse::<u16>()
        .with_context(|| format!("{hostport:?}: invalid port {port:?}"))?;
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .with_context(|| format!("resolving {host:?}"))?
        .collect();
    match addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()) {
        Some(a) => Ok(*a),
        None => bail!("resolving {host:?}: no addresses"),
    }
}

/// `host:port` → (host, port), the host without IPv6 brackets.
pub fn split_host_port(hostport: &str) -> anyhow::Result<(&str, &str)> {
    let Some((host, port)) = hostport.rsplit_once(':') else {
        bail!("{hostport:?} is not host:port");
    };
    let host = match host.strip_prefix('[') {
        Some(h) => h
            .strip_suffix(']')
            .with_context(|| format!("{hostport:?} is not host:port"))?,
        None => host,
    };
    Ok((host, port))
}

/// A comma-separated list of listen addresses, each `host:port` or
/// `scheme://host:port[/]`, with every host resolved (`bind_addr`) and
/// the scheme kept.
pub fn bind_list(list: &str) -> anyhow::Result<String> {
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let (scheme, rest) = match entry.split_once("://") {
            Some((s, r)) => (Some(s), r),
            None => (None, entry),
        };
        let addr = bind_addr(rest.trim_end_matches('/'))?;
        out.push(match scheme {
            Some(s) => format!("{s}://{addr}"),
            None => addr.to_string(),
        });
    }
    Ok(out.join(","))
}

/// etcd's rule for listen URLs (`checkBindURLs`): the host must be an IP
/// address or `localhost`; other names are refused with etcd's message.
pub fn etcd_check_bind_url(url: &str, hostport: &str) -> anyhow::Result<()> {
    let host = split_host_port(hostport).map_or("", |(h, _)| h);
    if host == "localhost" || host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    bail!("expected IP in URL for binding ({url})")
}

/// Whether two `host:port` addresses name the same socket: equal as
/// written, or resolving (as `bind_addr`) to one address; etcd compares
/// `--initial-cluster` with `--initial-advertise-peer-urls` so.
pub fn same_address(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (bind_addr(a), bind_addr(b)),
            (Ok(x), Ok(y)) if x == y
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_addresses_unchanged() {
        assert_eq!(
            bind_addr("127.0.0.1:2380").unwrap(),
            "127.0.0.1:2380".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(bind_addr("[::1]:2380").unwrap().to_string(), "[::1]:2380");
        assert_eq!(
            bind_addr("0.0.0.0:2181").unwrap().to_string(),
            "0.0.0.0:2181"
        );
    }

    #[test]
    fn names_resolve_to_ipv4_first() {
        let a = bind_addr("localhost:2380").unwrap();
        assert!(a.ip().is_loopback(), "{a}");
        assert!(a.is_ipv4(), "localhost binds its IPv4 address first: {a}");
        assert_eq!(a.port(), 2380);
    }

    #[test]
    fn bad_addresses_refused() {
        assert!(bind_addr("no-such-host.invalid:2380").is_err());
        assert!(bind_addr("localhost").is_err());
        assert!(bind_addr("localhost:http").is_err());
        assert!(bind_addr("localhost:99999").is_err());
        let e = bind_addr("no-such-host.invalid:2380").unwrap_err();
        assert!(format!("{e:#}").contains("no-such-host.invalid"), "{e:#}");
    }

    #[test]
    fn lists_keep_schemes() {
        assert_eq!(
            bind_list("http://localhost:2379, https://127.0.0.1:2479/,localhost:2579").unwrap(),
            "http://127.0.0.1:2379,https://127.0.0.1:2479,127.0.0.1:2579"
        );
        assert_eq!(bind_list("").unwrap(), "");
        assert!(bind_list("http://no-such-host.invalid:1").is_err());
    }

    #[test]
    fn etcd_bind_urls() {
        assert!(etcd_check_bind_url("http://localhost:2380", "localhost:2380").is_ok());
        assert!(etcd_check_bind_url("http://10.0.0.1:2380", "10.0.0.1:2380").is_ok());
        assert!(etcd_check_bind_url("http://[::1]:2380", "[::1]:2380").is_ok());
        let e = etcd_check_bind_url("http://foo.invalid:2379", "foo.invalid:2379").unwrap_err();
        assert_eq!(
            e.to_string(),
            "expected IP in URL for binding (http://foo.invalid:2379)"
        );
    }

    #[test]
    fn same_address_resolves() {
        assert!(same_address("localhost:2380", "127.0.0.1:2380"));
        assert!(same_address("a.invalid:1", "a.invalid:1"));
        assert!(!same_address("localhost:2380", "127.0.0.1:2381"));
        assert!(!same_address("a.invalid:1", "b.invalid:1"));
    }
}
