//! Certificates, keys and CRLs from files: PEM (etcd's files, ZooKeeper's
//! `ssl.keyStore.type=PEM`) and Java's key and trust stores, JKS and
//! PKCS#12 (ZooKeeper's defaults). The format is read from the content,
//! as Java does: JDK 9 and later read a PKCS#12 file as a "JKS" store and
//! `keytool` makes PKCS#12 stores by default, whatever the file is called.

use std::path::Path;

use sha1::{Digest, Sha1};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, PrivatePkcs8KeyDer,
};

use crate::TlsError;

/// A certificate chain (the end-entity certificate first) and its key.
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Identity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_err(path: &Path, what: impl Into<String>) -> TlsError {
    TlsError::Parse {
        path: path.to_path_buf(),
        what: what.into(),
    }
}

/// Every certificate in a PEM file (a chain or a CA bundle).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    pem_certs(path, &read(path)?)
}

fn pem_certs(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse_err(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(parse_err(path, "no certificate found"));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|e| parse_err(path, e.to_string()))
}

/// The CRLs of a file, PEM (`X509 CRL` blocks) or one DER CRL, as Go's
/// `x509.ParseCRL` (etcd's `--client-crl-file`) reads it.
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let data = read(path)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| parse_err(path, e.to_string()))?;
    if !crls.is_empty() {
        return Ok(crls);
    }
    if x509_parser::parse_x509_crl(&data).is_err() {
        return Err(parse_err(path, "no certificate revocation list found"));
    }
    Ok(vec![CertificateRevocationListDer::from(data)])
}

/// What a store file holds, by its first bytes.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Jks,
    Pem,
    Pkcs12,
}

const JKS_MAGIC: [u8; 4] = [0xfe, 0xed, 0xfe, 0xed];
const JCEKS_MAGIC: [u8; 4] = [0xce, 0xce, 0xce, 0xce];

fn kind(path: &Path, data: &[u8]) -> Result<Kind, TlsError> {
    if data.starts_with(&JKS_MAGIC) {
        Ok(Kind::Jks)
    } else if data.starts_with(&JCEKS_MAGIC) {
        Err(parse_err(
            path,
            "JCEKS stores are not read; use JKS, PKCS12 or PEM",
        ))
    } else if data.first() == Some(&0x30) {
        Ok(Kind::Pkcs12)
    } else {
        Ok(Kind::Pem)
    }
}

/// A key store: `cert` holds the chain (PEM, or a JKS / PKCS#12 store
/// holding chain and key, opened with `password`); `key` is the PEM key
/// file when `cert` is PEM (ZooKeeper's PEM key store is one file with
/// both, so the two paths may be the same). From a store, the first
/// private key entry is used (Java's key manager picks among several by
/// key type; one entry is what ZooKeeper's documentation shows).
pub fn load_identity(
    cert: &Path,
    key: &Path,
    password: Option<&str>,
) -> Result<Identity, TlsError> {
    let data = read(cert)?;
    match kind(cert, &data)? {
        Kind::Pem => Ok(Identity {
            chain: pem_certs(cert, &data)?,
            key: load_key(key)?,
        }),
        Kind::Jks => {
            let jks = Jks::parse(&data, password).map_err(|e| parse_err(cert, e))?;
            let (chain, key) = jks
                .keys
                .into_iter()
                .next()
                .ok_or_else(|| parse_err(cert, "no private key entry in the key store"))?;
            let key =
                jks_key(&key, password.unwrap_or_default()).map_err(|e| parse_err(cert, e))?;
            Ok(Identity {
                chain: chain.into_iter().map(CertificateDer::from).collect(),
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
            })
        }
        Kind::Pkcs12 => {
            let p12 = pkcs12(cert, &data, password)?;
            let key = p12
                .keys
                .first()
                .ok_or_else(|| parse_err(cert, "no private key entry in the key store"))?;
            // The certificate with the key's local key id, then its issuers
            // present in the store.
            let mut chain: Vec<&p12_keystore::Certificate> = Vec::new();
            let leaf = p12.certs.iter().find(|c| {
                key.local_key_id.is_some()
                    && c.local_key_id.as_deref()
                        == key.local_key_id.as_ref().map(|k| k.0.as_slice())
            });
            let leaf = leaf
                .or_else(|| p12.certs.iter().find(|c| !c.trusted))
                .ok_or_else(|| parse_err(cert, "no certificate for the private key"))?;
            chain.push(&leaf.cert);
            let mut cur = &leaf.cert;
            while cur.issuer() != cur.subject() {
                let Some(next) = p12
                    .certs
                    .iter()
                    .map(|c| &c.cert)
                    .find(|c| c.subject() == cur.issuer() && !chain.contains(c))
                else {
                    break;
                };
                chain.push(next);
                cur = next;
            }
            Ok(Identity {
                chain: chain
                    .into_iter()
                    .map(|c| CertificateDer::from(c.as_der().to_vec()))
                    .collect(),
                key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.key.as_der().to_vec())),
            })
        }
    }
}

/// A trust store's certificates: PEM, or a JKS / PKCS#12 store's trusted
/// certificate entries and the first certificate of each key entry (as
/// Java's `KeyStores.getTrustedCerts`).
pub fn load_trust(
    path: &Path,
    password: Option<&str>,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let data = read(path)?;
    let certs: Vec<Vec<u8>> = match kind(path, &data)? {
        Kind::Pem => return pem_certs(path, &data),
        Kind::Jks => {
            let jks = Jks::parse(&data, password).map_err(|e| parse_err(path, e))?;
            let mut out = jks.trusted;
            out.extend(
                jks.keys
                    .into_iter()
                    .filter_map(|(c, _)| c.into_iter().next()),
            );
            out
        }
        Kind::Pkcs12 => {
            let p12 = pkcs12(path, &data, password)?;
            let keyed = |c: &p12_keystore::CertificateBag| {
                c.local_key_id.as_ref().is_some_and(|id| {
                    p12.keys
                        .iter()
                        .any(|k| k.local_key_id.as_ref().is_some_and(|k| &k.0 == id))
                })
            };
            p12.certs
                .iter()
                .filter(|c| c.trusted || keyed(c))
                .map(|c| c.cert.as_der().to_vec())
                .collect()
        }
    };
    if certs.is_empty() {
        return Err(parse_err(path, "no trusted certificate in the trust store"));
    }
    Ok(certs.into_iter().map(CertificateDer::from).collect())
}

fn pkcs12(
    path: &Path,
    data: &[u8],
    password: Option<&str>,
) -> Result<p12_keystore::Pkcs12Archive, TlsError> {
    p12_keystore::Pkcs12Archive::from_pkcs12(data, password.unwrap_or_default()).map_err(|e| {
        parse_err(
            path,
            format!("reading it as a PKCS12 store (wrong password?): {e}"),
        )
    })
}

/// A JKS store (Sun's `JavaKeyStore` format): key entries (certificate
/// chain, protected key) and trusted certificates.
struct Jks {
    keys: Vec<(Vec<Vec<u8>>, Vec<u8>)>,
    trusted: Vec<Vec<u8>>,
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or("truncated JKS store")?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u16(&mut self) -> Result<usize, String> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]) as usize)
    }
    fn u32(&mut self) -> Result<usize, String> {
        let s = self.take(4)?;
        Ok(u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
    }
    fn utf(&mut self) -> Result<(), String> {
        let n = self.u16()?;
        self.take(n).map(|_| ())
    }
    fn cert(&mut self, version: usize) -> Result<Vec<u8>, String> {
        if version == 2 {
            self.utf()?; // certificate type, "X.509"
        }
        let n = self.u32()?;
        Ok(self.take(n)?.to_vec())
    }
}

/// Java's password bytes for JKS: each UTF-16 code unit, big-endian.
fn jks_password(password: &str) -> Vec<u8> {
    password.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

impl Jks {
    fn parse(b: &[u8], password: Option<&str>) -> Result<Jks, String> {
        let mut r = Reader { b, at: 0 };
        r.take(4)?; // magic
        let version = r.u32()?;
        if version != 1 && version != 2 {
            return Err(format!("unknown JKS version {version}"));
        }
        let count = r.u32()?;
        let mut jks = Jks {
            keys: Vec::new(),
            trusted: Vec::new(),
        };
        for _ in 0..count {
            match r.u32()? {
                1 => {
                    r.utf()?;
                    r.take(8)?; // creation date
                    let n = r.u32()?;
                    let key = r.take(n)?.to_vec();
                    let certs = r.u32()?;
                    let chain = (0..certs)
                        .map(|_| r.cert(version))
                        .collect::<Result<Vec<_>, _>>()?;
                    jks.keys.push((chain, key));
                }
                2 => {
                    r.utf()?;
                    r.take(8)?;
                    jks.trusted.push(r.cert(version)?);
                }
                t => return Err(format!("unknown JKS entry type {t}")),
            }
        }
        let body_end = r.at;
        let digest = r.take(20)?;
        // Java checks the store's integrity only when given a password.
        if let Some(pw) = password {
            let mut h = Sha1::new();
            h.update(jks_password(pw));
            h.update(b"Mighty Aphrodite");
            h.update(&b[..body_end]);
            if h.finalize().as_slice() != digest {
                return Err("Keystore was tampered with, or password was incorrect".into());
            }
        }
        Ok(jks)
    }
}

/// Decrypts a JKS key entry (Sun's `KeyProtector`: an
/// EncryptedPrivateKeyInfo whose data is salt, the key XORed with a SHA-1
/// keystream of password and salt, and a SHA-1 check) to PKCS#8 DER.
fn jks_key(protected: &[u8], password: &str) -> Result<Vec<u8>, String> {
    use x509_parser::der_parser::ber::BerObjectContent;
    const KEY_PROTECTOR: &str = "1.3.6.1.4.1.42.2.17.1.1";
    let (_, info) =
        x509_parser::der_parser::parse_der(protected).map_err(|e| format!("JKS key entry: {e}"))?;
    let seq = info
        .as_sequence()
        .map_err(|e| format!("JKS key entry: {e}"))?;
    let (Some(alg), Some(data)) = (seq.first(), seq.get(1)) else {
        return Err("JKS key entry: not an EncryptedPrivateKeyInfo".into());
    };
    let oid = alg
        .as_sequence()
        .ok()
        .and_then(|a| a.first())
        .and_then(|o| o.as_oid().ok())
        .map(|o| o.to_id_string());
    if oid.as_deref() != Some(KEY_PROTECTOR) {
        return Err(format!(
            "JKS key entry protected with {}, not Sun's key protector",
            oid.unwrap_or_default()
        ));
    }
    let BerObjectContent::OctetString(data) = data.content else {
        return Err("JKS key entry: no encrypted key".into());
    };
    if data.len() < 40 {
        return Err("JKS key entry: too short".into());
    }
    let pw = jks_password(password);
    let (salt, rest) = data.split_at(20);
    let (enc, check) = rest.split_at(rest.len() - 20);
    let mut key = Vec::with_capacity(enc.len());
    let mut digest = salt.to_vec();
    for chunk in enc.chunks(20) {
        let mut h = Sha1::new();
        h.update(&pw);
        h.update(&digest);
        digest = h.finalize().to_vec();
        key.extend(chunk.iter().zip(&digest).map(|(a, b)| a ^ b));
    }
    let mut h = Sha1::new();
    h.update(&pw);
    h.update(&key);
    if h.finalize().as_slice() != check {
        return Err("Cannot recover key (wrong password?)".into());
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A JKS store built by hand: one key entry protected as Sun's
    /// KeyProtector does, one trusted certificate.
    fn jks_store(password: &str, key: &[u8], cert: &[u8]) -> Vec<u8> {
        let pw = jks_password(password);
        let salt = [7u8; 20];
        let mut enc = Vec::new();
        let mut digest = salt.to_vec();
        for chunk in key.chunks(20) {
            let mut h = Sha1::new();
            h.update(&pw);
            h.update(&digest);
            digest = h.finalize().to_vec();
            enc.extend(chunk.iter().zip(&digest).map(|(a, b)| a ^ b));
        }
        let mut h = Sha1::new();
        h.update(&pw);
        h.update(key);
        let mut data = salt.to_vec();
        data.extend(enc);
        data.extend(h.finalize());
        // SEQUENCE { SEQUENCE { OID 1.3.6.1.4.1.42.2.17.1.1, NULL }, OCTET STRING }
        let alg = [
            0x30, 0x0e, 0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x2a, 0x02, 0x11, 0x01, 0x01,
            0x05, 0x00,
        ];
        let mut octets = vec![0x04, 0x81, data.len() as u8];
        octets.extend(&data);
        let inner_len = alg.len() + octets.len();
        let mut epki = vec![0x30, 0x81, inner_len as u8];
        epki.extend(alg);
        epki.extend(octets);

        let mut b = JKS_MAGIC.to_vec();
        b.extend(2u32.to_be_bytes());
        b.extend(2u32.to_be_bytes());
        let utf = |s: &str| {
            let mut v = (s.len() as u16).to_be_bytes().to_vec();
            v.extend(s.as_bytes());
            v
        };
        b.extend(1u32.to_be_bytes());
        b.extend(utf("server"));
        b.extend(0u64.to_be_bytes());
        b.extend((epki.len() as u32).to_be_bytes());
        b.extend(&epki);
        b.extend(1u32.to_be_bytes());
        b.extend(utf("X.509"));
        b.extend((cert.len() as u32).to_be_bytes());
        b.extend(cert);
        b.extend(2u32.to_be_bytes());
        b.extend(utf("ca"));
        b.extend(0u64.to_be_bytes());
        b.extend(utf("X.509"));
        b.extend((cert.len() as u32).to_be_bytes());
        b.extend(cert);
        let mut h = Sha1::new();
        h.update(&pw);
        h.update(b"Mighty Aphrodite");
        h.update(&b);
        let d = h.finalize();
        b.extend(d);
        b
    }

    #[test]
    fn jks_round_trip_and_wrong_password() {
        let key: Vec<u8> = (0..50u8).collect();
        let cert = b"not really a certificate".to_vec();
        let store = jks_store("changeit", &key, &cert);
        let jks = Jks::parse(&store, Some("changeit")).expect("parses");
        assert_eq!(jks.trusted, vec![cert.clone()]);
        assert_eq!(jks.keys.len(), 1);
        assert_eq!(jks.keys[0].0, vec![cert.clone()]);
        assert_eq!(jks_key(&jks.keys[0].1, "changeit"), Ok(key));
        assert!(jks_key(&jks.keys[0].1, "wrong").is_err());
        assert_eq!(
            Jks::parse(&store, Some("wrong")).err().as_deref(),
            Some("Keystore was tampered with, or password was incorrect")
        );
        // No password: read without the integrity check, as Java does.
        assert!(Jks::parse(&store, None).is_ok());
        assert!(Jks::parse(&store[..store.len() - 30], Some("changeit")).is_err());
        assert!(Jks::parse(&JKS_MAGIC, None).is_err());
    }

    #[test]
    fn kinds() {
        let p = Path::new("x");
        assert_eq!(kind(p, &JKS_MAGIC).ok(), Some(Kind::Jks));
        assert_eq!(kind(p, b"-----BEGIN").ok(), Some(Kind::Pem));
        assert_eq!(kind(p, &[0x30, 0x82]).ok(), Some(Kind::Pkcs12));
        assert!(kind(p, &JCEKS_MAGIC).is_err());
    }
}
