//! TLS on the etcd client port, as etcd's `--cert-file`, `--key-file`,
//! `--trusted-ca-file` and `--client-cert-auth`: one listener carries gRPC,
//! the JSON gateway and the HTTP endpoints, so TLS is terminated here
//! (rustls) and the decrypted connection is served by the same axum router
//! as the plaintext port. ALPN offers `h2` and `http/1.1`.
//!
//! A verified client certificate's subject common name reaches every
//! request handler as the request extension [`ClientCertCn`] (tonic copies
//! HTTP extensions into `tonic::Request::extensions()`); etcd uses that name
//! as the user when auth is on and a request carries no token.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio_rustls::rustls;

/// The common name of the client's verified certificate (the first one of
/// the chain it sent), present on requests of TLS connections whose client
/// presented a certificate the trusted CA signed.
///
/// ```ignore
/// let cn = req.extensions().get::<janus_etcd::ClientCertCn>().map(|c| c.0.as_str());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertCn(pub String);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Files(#[from] janus_tls::TlsError),
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("{0}")]
    Config(String),
}

/// A rustls server configuration: `cert`/`key` is the server identity;
/// with `trusted_ca` every client must present a certificate it signed
/// (etcd's `TLSInfo.ServerConfig` requires one whenever a trusted CA or
/// client-cert-auth is set), checked as Go checks it (see `janus_tls::verify`)
/// and against `crl` (`--client-crl-file`; without a CA no client
/// certificate is asked for, so, as in etcd, it has no effect).
/// `client_cert_auth` without a
/// CA is refused: etcd would verify against the system roots, which Janus
/// does not load.
pub fn server_config(
    cert: &Path,
    key: &Path,
    trusted_ca: Option<&Path>,
    client_cert_auth: bool,
    crl: Option<&Path>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(janus_tls::provider())
        .with_safe_default_protocol_versions()?;
    let builder = match trusted_ca {
        Some(ca) => {
            let crls = match crl {
                Some(p) => janus_tls::load_crls(p)?,
                None => Vec::new(),
            };
            builder.with_client_cert_verifier(janus_tls::verify::client_verifier(
                janus_tls::load_certs(ca)?,
                crls,
                false,
            )?)
        }
        None if client_cert_auth => {
            return Err(TlsError::Config(
                "client_cert_auth needs trusted_ca_file".into(),
            ))
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg =
        builder.with_single_cert(janus_tls::load_certs(cert)?, janus_tls::load_key(key)?)?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serve `app` over TLS on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => return Ok(()),
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    // Out of descriptors and the like: wait, keep serving.
                    tracing::warn!("etcd accept: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            // A client that never finishes its handshake holds nothing long.
            let tls =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "etcd TLS handshake: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "etcd TLS handshake timed out");
                        return;
                    }
                };
            let cn = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| common_name(c.as_ref()))
                .map(ClientCertCn);
            let svc =
                tower::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
                    if let Some(cn) = &cn {
                        req.extensions_mut().insert(cn.clone());
                    }
                    tower::ServiceExt::oneshot(app.clone(), req.map(axum::body::Body::new))
                });
            let svc = hyper_util::service::TowerToHyperService::new(svc);
            let conn =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            if let Err(e) = conn
                .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tls), svc)
                .await
            {
                tracing::debug!(%peer, "etcd TLS connection: {e}");
            }
        });
    }
}

/// One DER element: (tag, contents, what follows).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = b.split_first()?;
    let (&l0, rest) = rest.split_first()?;
    let (len, rest) = if l0 < 0x80 {
        (l0 as usize, rest)
    } else {
        let n = (l0 & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |a, &x| (a << 8) | x as usize);
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The subject common name of a DER certificate (the last CN attribute, as
/// Go's `pkix.Name.CommonName`, which etcd reads).
pub fn common_name(cert: &[u8]) -> Option<String> {
    const SEQ: u8 = 0x30;
    let (SEQ, cert, _) = der(cert)? else {
        return None;
    };
    let (SEQ, tbs, _) = der(cert)? else {
        return None;
    };
    let mut rest = tbs;
    // [0] version (optional), serial, signature algorithm, issuer, validity.
    let (tag, _, r) = der(rest)?;
    rest = r;
    if tag == 0xa0 {
        rest = der(rest)?.2;
    }
    for _ in 0..3 {
        rest = der(rest)?.2;
    }
    let (SEQ, mut rdns, _) = der(rest)? else {
        return None;
    };
    let mut cn = None;
    while !rdns.is_empty() {
        let (_, set, r) = der(rdns)?;
        rdns = r;
        let mut atvs = set;
        while !atvs.is_empty() {
            let (_, atv, r) = der(atvs)?;
            atvs = r;
            let (0x06, oid, v) = der(atv)? else {
                continue;
            };
            if oid != [0x55, 0x04, 0x03] {
                continue;
            }
            let (tag, value, _) = der(v)?;
            cn = Some(match tag {
                // BMPString: UTF-16BE.
                0x1e => {
                    let units: Vec<u16> = value
                        .chunks(2)
                        .map(|c| u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))
                        .collect();
                    String::from_utf16_lossy(&units)
                }
                _ => String::from_utf8_lossy(value).into_owned(),
            });
        }
    }
    cn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_lengths_and_garbage() {
        assert_eq!(der(&[0x30, 0x01, 0xff]), Some((0x30, &[0xff][..], &[][..])));
        assert_eq!(
            der(&[0x30, 0x81, 0x01, 0xaa, 0xbb]).map(|d| d.1),
            Some(&[0xaa][..])
        );
        assert_eq!(der(&[0x30, 0x05, 0x00]), None);
        assert_eq!(common_name(&[]), None);
        assert_eq!(common_name(&[0x30, 0x02, 0x30, 0x00]), None);
        assert_eq!(common_name(b"not a certificate at all"), None);
    }
}
