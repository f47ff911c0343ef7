//! etcd's `--auto-tls` / `--peer-auto-tls` certificates (etcd's
//! `transport.SelfCert`): `cert.pem` and `key.pem` in a directory
//! (`<data-dir>/fixtures/client` or `.../peer`), made once and reused on
//! later starts; subject `O=etcd`, valid for one year, key usage digital
//! signature and key encipherment, extended key usage server auth, not a
//! CA, and the listen URLs' hosts as subject alternative names (IP
//! addresses as IP names, others as DNS names).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::TlsError;

/// The certificate and key files of `dir`, made first if either is
/// missing. `hosts` are URL hosts (`host:port`, `[v6]:port` or a bare
/// host).
pub fn self_cert(dir: &Path, hosts: &[String]) -> Result<(PathBuf, PathBuf), TlsError> {
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let gen = |e: rcgen::Error| TlsError::Generate(e.to_string());
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "etcd");
    params.distinguished_name = dn;
    for h in hosts {
        let host = host_of(h);
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.to_string().try_into().map_err(gen)?),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let start = x509_parser::time::ASN1Time::from_timestamp(now as i64)
        .map_err(|e| TlsError::Generate(e.to_string()))?
        .to_datetime();
    params.not_before = start;
    params.not_after = start + std::time::Duration::from_secs(365 * 24 * 3600);
    let mut serial = [0u8; 16];
    rcgen_serial(&mut serial);
    params.serial_number = Some(serial.to_vec().into());
    // ECDSA P-256 (etcd uses P-521, which ring does not sign with).
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(gen)?;
    let cert = params.self_signed(&key).map_err(gen)?;

    std::fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    restrict(dir, 0o700);
    write(&cert_path, cert.pem().as_bytes(), 0o644)?;
    write(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
    Ok((cert_path, key_path))
}

/// A URL's host without its port and IPv6 brackets.
fn host_of(h: &str) -> &str {
    if let Some(rest) = h.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match h.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) && !host.contains(':') => {
            host
        }
        _ => h,
    }
}

fn rcgen_serial(buf: &mut [u8]) {
    use tokio_rustls::rustls::crypto::ring::default_provider;
    if default_provider().secure_random.fill(buf).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8;
        }
    }
    // A positive INTEGER.
    buf[0] &= 0x7f;
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), TlsError> {
    std::fs::write(path, data).map_err(|source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    })?;
    restrict(path, mode);
    Ok(())
}

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn restrict(_path: &Path, _mode: u32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        assert_eq!(host_of("127.0.0.1:2379"), "127.0.0.1");
        assert_eq!(host_of("[::1]:2379"), "::1");
        assert_eq!(host_of("localhost"), "localhost");
        assert_eq!(host_of("::1"), "::1");
    }

    #[test]
    fn made_once_with_the_hosts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().join("fixtures/client");
        let hosts = vec!["127.0.0.1:2379".to_string(), "localhost:2379".to_string()];
        let (c, k) = self_cert(&d, &hosts).expect("made");
        let pem = std::fs::read(&c).expect("cert");
        let certs = crate::load_certs(&c).expect("certs");
        let (_, x) = x509_parser::parse_x509_certificate(&certs[0]).expect("parse");
        let san = x
            .subject_alternative_name()
            .ok()
            .flatten()
            .map(|s| format!("{:?}", s.value.general_names))
            .unwrap_or_default();
        assert!(san.contains("localhost"), "{san}");
        assert!(!x.is_ca());
        assert!(crate::load_key(&k).is_ok());
        // A second start keeps the files.
        self_cert(&d, &hosts).expect("again");
        assert_eq!(std::fs::read(&c).expect("cert"), pem);
    }
}
