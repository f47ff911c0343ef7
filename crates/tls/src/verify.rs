//! Certificate verifiers that accept what etcd (Go's `crypto/tls`) and
//! ZooKeeper (Java's PKIX trust manager) accept.
//!
//! webpki (rustls's verifier) refuses an end-entity certificate marked
//! `CA:TRUE` (`CaUsedAsEndEntity`); Go and Java have no such rule, and
//! `openssl req -x509` with Debian's default configuration makes exactly
//! such a certificate, often used as server, client and CA at once. Every
//! certificate goes through webpki first; only when webpki fails it and
//! the end-entity certificate is a CA certificate is it checked again
//! without that rule: still within its validity period, with a fitting
//! extended key usage (when it has one), not revoked, and either itself one
//! of the configured CA certificates or signed by one (directly or through
//! the intermediates the peer sent).

use std::sync::Arc;

use tokio_rustls::rustls::{
    self,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    client::WebPkiServerVerifier,
    pki_types::{CertificateDer, CertificateRevocationListDer, ServerName, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
    server::{ParsedCertificate, WebPkiClientVerifier},
    CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::time::ASN1Time;

use crate::TlsError;

/// Which end the certificate identifies (its extended key usage).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Usage {
    Client,
    Server,
}

/// The configured CAs and CRLs.
#[derive(Debug, Clone)]
struct Trust {
    roots: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
}

fn roots_store(roots: &[CertificateDer<'static>]) -> Result<rustls::RootCertStore, TlsError> {
    let mut store = rustls::RootCertStore::empty();
    for c in roots {
        store.add(c.clone())?;
    }
    Ok(store)
}

/// Verifies client certificates against `roots` (and `crls`); with
/// `optional`, a client without a certificate is let in (ZooKeeper's
/// `ssl.clientAuth=want`).
pub fn client_verifier(
    roots: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
    optional: bool,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let mut b = WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots_store(&roots)?),
        crate::provider(),
    );
    if !crls.is_empty() {
        // etcd looks up the peer's certificate serial in the CRL and lets
        // everything else through: no CRL for an issuer is no revocation.
        b = b
            .with_crls(crls.clone())
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    if optional {
        b = b.allow_unauthenticated();
    }
    let inner = b.build().map_err(|e| TlsError::Verifier(e.to_string()))?;
    Ok(Arc::new(GoClientVerifier {
        inner,
        trust: Trust { roots, crls },
    }))
}

/// Verifies server certificates (the peer port's client side) against
/// `roots` and `crls`, names included.
pub fn server_verifier(
    roots: Vec<CertificateDer<'static>>,
    crls: Vec<CertificateRevocationListDer<'static>>,
) -> Result<Arc<dyn ServerCertVerifier>, TlsError> {
    let mut b = WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots_store(&roots)?),
        crate::provider(),
    );
    if !crls.is_empty() {
        b = b
            .with_crls(crls.clone())
            .only_check_end_entity_revocation()
            .allow_unknown_revocation_status();
    }
    let inner = b.build().map_err(|e| TlsError::Verifier(e.to_string()))?;
    Ok(Arc::new(GoServerVerifier {
        inner,
        trust: Trust { roots, crls },
    }))
}

/// Accepts any server certificate (handshake signatures are still
/// checked): etcd's peers do so with `--peer-auto-tls`, whose certificates
/// are self-signed and unknown to the other members.
pub fn no_server_verification() -> Arc<dyn ServerCertVerifier> {
    Arc::new(AnyServer(crate::provider()))
}

/// Whether webpki's refusal may be one of the rules Go and Java lack.
fn relaxable(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(CertificateError::Other(_))
    )
}

fn bad(e: CertificateError) -> rustls::Error {
    rustls::Error::InvalidCertificate(e)
}

/// The check without webpki's CA rule (see the module's comment). Returns
/// `original` when the certificate is not a CA certificate: then webpki's
/// refusal stands.
fn go_verify(
    trust: &Trust,
    ee: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    usage: Usage,
    original: rustls::Error,
) -> Result<(), rustls::Error> {
    let Ok((_, leaf)) = x509_parser::parse_x509_certificate(ee) else {
        return Err(original);
    };
    let is_ca = matches!(leaf.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
    if !is_ca {
        return Err(original);
    }
    let t = i64::try_from(now.as_secs())
        .ok()
        .and_then(|s| ASN1Time::from_timestamp(s).ok())
        .ok_or_else(|| bad(CertificateError::BadEncoding))?;
    if !leaf.validity().is_valid_at(t) {
        return Err(bad(CertificateError::Expired));
    }
    if let Ok(Some(eku)) = leaf.extended_key_usage() {
        let e = eku.value;
        let ok = e.any
            || match usage {
                Usage::Client => e.client_auth,
                Usage::Server => e.server_auth,
            };
        if !ok {
            return Err(bad(CertificateError::InvalidPurpose));
        }
    }
    // etcd's checkCRL: the certificate's serial in any revocation list.
    for crl in &trust.crls {
        if let Ok((_, crl)) = x509_parser::parse_x509_crl(crl) {
            if crl
                .iter_revoked_certificates()
                .any(|r| r.raw_serial() == leaf.raw_serial())
            {
                return Err(bad(CertificateError::Revoked));
            }
        }
    }
    if trust.roots.iter().any(|r| r.as_ref() == ee.as_ref()) {
        return Ok(());
    }
    let roots: Vec<X509Certificate<'_>> = trust
        .roots
        .iter()
        .filter_map(|r| x509_parser::parse_x509_certificate(r).ok().map(|p| p.1))
        .collect();
    let inters: Vec<X509Certificate<'_>> = intermediates
        .iter()
        .filter_map(|r| x509_parser::parse_x509_certificate(r).ok().map(|p| p.1))
        .collect();
    let signed_by = |c: &X509Certificate<'_>, issuer: &X509Certificate<'_>| {
        c.issuer().as_raw() == issuer.subject().as_raw()
            && c.verify_signature(Some(issuer.public_key())).is_ok()
    };
    let mut cur = &leaf;
    // Go's chain building stops at a depth well beyond real chains too.
    for _ in 0..8 {
        if roots.iter().any(|r| signed_by(cur, r)) {
            return Ok(());
        }
        let next = inters.iter().find(|i| {
            matches!(i.basic_constraints(), Ok(Some(bc)) if bc.value.ca)
                && i.validity().is_valid_at(t)
                && signed_by(cur, i)
        });
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    Err(bad(CertificateError::UnknownIssuer))
}

#[derive(Debug)]
struct GoClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    trust: Trust,
}

impl ClientCertVerifier for GoClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        ee: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self.inner.verify_client_cert(ee, intermediates, now) {
            Err(e) if relaxable(&e) => {
                go_verify(&self.trust, ee, intermediates, now, Usage::Client, e)?;
                Ok(ClientCertVerified::assertion())
            }
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct GoServerVerifier {
    inner: Arc<WebPkiServerVerifier>,
    trust: Trust,
}

impl ServerCertVerifier for GoServerVerifier {
    fn verify_server_cert(
        &self,
        ee: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .inner
            .verify_server_cert(ee, intermediates, server_name, ocsp, now)
        {
            Err(e) if relaxable(&e) => {
                go_verify(&self.trust, ee, intermediates, now, Usage::Server, e)?;
                rustls::client::verify_server_name(&ParsedCertificate::try_from(ee)?, server_name)?;
                Ok(ServerCertVerified::assertion())
            }
            r => r,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _ee: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    fn ca_cert(name: &str) -> (rcgen::Certificate, KeyPair) {
        let key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(vec![name.to_string()]).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        (p.self_signed(&key).expect("cert"), key)
    }

    fn now() -> UnixTime {
        UnixTime::now()
    }

    #[test]
    fn self_signed_ca_as_client_and_server() {
        let (cert, _) = ca_cert("localhost");
        let der = cert.der().clone();
        let v = client_verifier(vec![der.clone()], vec![], false).expect("verifier");
        assert!(v.verify_client_cert(&der, &[], now()).is_ok());
        let s = server_verifier(vec![der.clone()], vec![]).expect("verifier");
        let name = ServerName::try_from("localhost").expect("name");
        assert!(s.verify_server_cert(&der, &[], &name, &[], now()).is_ok());
        let other = ServerName::try_from("example.org").expect("name");
        assert!(s.verify_server_cert(&der, &[], &other, &[], now()).is_err());
    }

    #[test]
    fn ca_leaf_signed_by_the_ca_and_a_stranger() {
        let (ca, ca_key) = ca_cert("ca");
        let issuer = rcgen::Issuer::new(
            {
                let mut p = CertificateParams::new(vec!["ca".to_string()]).expect("params");
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
                p
            },
            &ca_key,
        );
        let leaf_key = KeyPair::generate().expect("key");
        let mut p = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let leaf = p.signed_by(&leaf_key, &issuer).expect("leaf");
        let v = client_verifier(vec![ca.der().clone()], vec![], false).expect("verifier");
        assert!(v.verify_client_cert(leaf.der(), &[], now()).is_ok());
        let (stranger, _) = ca_cert("localhost");
        assert!(v.verify_client_cert(stranger.der(), &[], now()).is_err());
    }
}
