//! The secure client port (ZooKeeper's `secureClientPort`): rustls with the
//! server's PEM certificate and key and, optionally, a CA whose client
//! certificates are accepted (`ssl.clientAuth` none / want / need).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::Config;

/// `ssl.clientAuth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    /// Client certificates are not requested.
    None,
    /// Requested; a client without one is served without an x509 id.
    Want,
    /// Required: a client without a valid one fails the handshake.
    Need,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("secure_listen needs {0}")]
    Missing(&'static str),
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: no usable PEM {what}")]
    Pem { path: String, what: &'static str },
    #[error("tls_client_auth = {0:?} needs tls_client_ca")]
    NoCa(ClientAuth),
    #[error("TLS setup: {0}")]
    Rustls(String),
}

fn read(path: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_string(),
        source,
    })
}

fn certs(path: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_string(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The effective `ssl.clientAuth`: as configured, else `need` when a client
/// CA is given (ZooKeeper's default) and `none` without one.
pub fn client_auth(cfg: &Config) -> ClientAuth {
    cfg.tls_client_auth
        .unwrap_or(if cfg.tls_client_ca.is_some() {
            ClientAuth::Need
        } else {
            ClientAuth::None
        })
}

/// The acceptor for `secure_listen`, from the `tls_*` settings.
pub fn acceptor(cfg: &Config) -> Result<TlsAcceptor, TlsError> {
    let cert_path = cfg
        .tls_cert
        .as_deref()
        .ok_or(TlsError::Missing("tls_cert"))?;
    let key_path = cfg.tls_key.as_deref().ok_or(TlsError::Missing("tls_key"))?;
    let chain = certs(cert_path)?;
    let key = PrivateKeyDer::from_pem_slice(&read(key_path)?).map_err(|_| TlsError::Pem {
        path: key_path.to_string(),
        what: "private key",
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let mode = client_auth(cfg);
    let builder = match (mode, cfg.tls_client_ca.as_deref()) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (m, None) => return Err(TlsError::NoCa(m)),
        (m, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certs(ca)? {
                roots
                    .add(c)
                    .map_err(|e| TlsError::Rustls(format!("{ca}: {e}")))?;
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            );
            let v = if m == ClientAuth::Want {
                v.allow_unauthenticated()
            } else {
                v
            };
            let v = v.build().map_err(|e| TlsError::Rustls(e.to_string()))?;
            builder.with_client_cert_verifier(v)
        }
    };
    let sc = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(format!("{cert_path} / {key_path}: {e}")))?;
    Ok(TlsAcceptor::from(Arc::new(sc)))
}

/// Random bytes from the TLS provider (SASL nonces).
pub fn fill_random(buf: &mut [u8]) {
    if rustls::crypto::ring::default_provider()
        .secure_random
        .fill(buf)
        .is_err()
    {
        // The system RNG failed (never expected): fall back to the clock and
        // address entropy, still unique per call.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8 ^ (i as u8);
        }
    }
}
