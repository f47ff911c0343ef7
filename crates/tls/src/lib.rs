//! TLS material and certificate checks shared by the etcd client port, the
//! ZooKeeper secure client port and the peer port.
//!
//! - [`store`]: certificates, keys and CRLs from PEM files, and ZooKeeper's
//!   key and trust stores (JKS, PKCS#12, PEM), read the way Java reads them.
//! - [`verify`]: client and server certificate verifiers that accept what
//!   Go's `crypto/tls` (etcd) and Java (ZooKeeper) accept where webpki is
//!   stricter, still checking the chain against the configured CAs.
//! - [`selfcert`]: etcd's `--auto-tls` / `--peer-auto-tls` certificates.
//! - [`net`]: TLS over TCP for tonic (the peer port's listener and its
//!   client connections), where tonic's own TLS settings cannot carry a
//!   custom verifier.

pub mod net;
pub mod selfcert;
pub mod store;
pub mod verify;

use std::path::PathBuf;
use std::sync::Arc;

pub use tokio_rustls::rustls;
use tokio_rustls::rustls::crypto::CryptoProvider;

pub use store::{load_certs, load_crls, load_identity, load_key, load_trust, Identity};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {what}")]
    Parse { path: PathBuf, what: String },
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("certificate verifier: {0}")]
    Verifier(String),
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("generating a self-signed certificate: {0}")]
    Generate(String),
}

/// A key or trust store password: kept out of logs.
#[derive(Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

/// The crypto provider every TLS endpoint of Janus uses (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
