//! The secure client port (ZooKeeper's `secureClientPort`): rustls with the
//! server's certificate and key (PEM, JKS or PKCS#12 key store) and,
//! optionally, a trust store whose client certificates are accepted
//! (`ssl.clientAuth` none / want / need).

use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;
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
    #[error(transparent)]
    Files(#[from] janus_tls::TlsError),
    #[error("tls_client_auth = {0:?} needs tls_client_ca")]
    NoCa(ClientAuth),
    #[error("TLS setup: {0}")]
    Rustls(String),
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

/// The acceptor for `secure_listen`, from the `tls_*` settings. Key and
/// trust stores may be PEM, JKS or PKCS#12 (`janus_tls::store`); client
/// certificates are checked as Java checks them (`janus_tls::verify`).
pub fn acceptor(cfg: &Config) -> Result<TlsAcceptor, TlsError> {
    let cert_path = cfg
        .tls_cert
        .as_deref()
        .ok_or(TlsError::Missing("tls_cert"))?;
    let key_path = cfg.tls_key.as_deref().ok_or(TlsError::Missing("tls_key"))?;
    let id = janus_tls::load_identity(
        Path::new(cert_path),
        Path::new(key_path),
        cfg.tls_key_store_password.as_ref().map(|p| p.0.as_str()),
    )?;
    let builder = rustls::ServerConfig::builder_with_provider(janus_tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let mode = client_auth(cfg);
    let builder = match (mode, cfg.tls_client_ca.as_deref()) {
        (ClientAuth::None, _) => builder.with_no_client_auth(),
        (m, None) => return Err(TlsError::NoCa(m)),
        (m, Some(ca)) => {
            let roots = janus_tls::load_trust(
                Path::new(ca),
                cfg.tls_trust_store_password.as_ref().map(|p| p.0.as_str()),
            )?;
            builder.with_client_cert_verifier(janus_tls::verify::client_verifier(
                roots,
                Vec::new(),
                m == ClientAuth::Want,
            )?)
        }
    };
    let sc = builder
        .with_single_cert(id.chain, id.key)
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
