//! The `x509` auth id of a client certificate, as ZooKeeper's
//! `X509AuthenticationProvider` makes it: the subject's X.500 name in
//! RFC 2253 form, exactly as Java's `X500Principal.getName()` prints it
//! (`CN=client,OU=zk,O=Acme\, Inc.,C=US`). A small DER reader walks the
//! certificate to the subject; nothing else of the certificate is trusted
//! here (rustls has verified the chain already).

/// A DER element: tag, and its content bytes; `whole` is the full TLV.
struct Tlv<'a> {
    tag: u8,
    content: &'a [u8],
    whole: &'a [u8],
}

/// Reads one TLV from the front of `b`; returns it and the rest.
fn tlv(b: &[u8]) -> Option<(Tlv<'_>, &[u8])> {
    let tag = *b.first()?;
    // Multi-byte tags (low bits all set) do not occur in a Name.
    if tag & 0x1f == 0x1f {
        return None;
    }
    let first = *b.get(1)? as usize;
    let (len, hdr) = if first < 0x80 {
        (first, 2)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *b.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let end = hdr.checked_add(len)?;
    if end > b.len() {
        return None;
    }
    Some((
        Tlv {
            tag,
            content: &b[hdr..end],
            whole: &b[..end],
        },
        &b[end..],
    ))
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const UTF8_STRING: u8 = 0x0c;
const PRINTABLE_STRING: u8 = 0x13;
const T61_STRING: u8 = 0x14;
const IA5_STRING: u8 = 0x16;
const GENERAL_STRING: u8 = 0x1b;
const BMP_STRING: u8 = 0x1e;

/// The subject of a DER certificate in RFC 2253 form; `None` if the
/// certificate cannot be read that far.
pub fn subject_rfc2253(cert: &[u8]) -> Option<String> {
    let (c, _) = tlv(cert)?;
    if c.tag != SEQUENCE {
        return None;
    }
    let (tbs, _) = tlv(c.content)?;
    if tbs.tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs.content;
    // [0] EXPLICIT version, optional.
    let (first, after) = tlv(rest)?;
    if first.tag == 0xa0 {
        rest = after;
    }
    // serialNumber, signature, issuer, validity, then subject.
    for _ in 0..4 {
        rest = tlv(rest)?.1;
    }
    let (subject, _) = tlv(rest)?;
    if subject.tag != SEQUENCE {
        return None;
    }
    name_rfc2253(subject.content)
}

/// A Name's RDNSequence contents: RDNs last first, joined by `,`
/// (`X500Name.getRFC2253Name`); a multi-valued RDN's values in encoded
/// order joined by `+`.
fn name_rfc2253(mut seq: &[u8]) -> Option<String> {
    let mut rdns = Vec::new();
    while !seq.is_empty() {
        let (set, rest) = tlv(seq)?;
        if set.tag != SET {
            return None;
        }
        let mut avas = Vec::new();
        let mut inner = set.content;
        while !inner.is_empty() {
            let (ava, r) = tlv(inner)?;
            if ava.tag != SEQUENCE {
                return None;
            }
            avas.push(ava_rfc2253(ava.content)?);
            inner = r;
        }
        rdns.push(avas.join("+"));
        seq = rest;
    }
    rdns.reverse();
    Some(rdns.join(","))
}

/// The keywords Java prints in RFC 2253 form; any other type is printed as
/// its dotted OID.
fn keyword(oid: &[u8]) -> Option<&'static str> {
    Some(match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x0a] => "O",
        [0x55, 0x04, 0x0b] => "OU",
        [0x55, 0x04, 0x09] => "STREET",
        // 0.9.2342.19200300.100.1.25 and .1
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x19] => "DC",
        [0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01] => "UID",
        _ => return None,
    })
}

fn dotted(oid: &[u8]) -> Option<String> {
    let mut parts: Vec<u64> = Vec::new();
    let mut v: u64 = 0;
    for (i, b) in oid.iter().enumerate() {
        v = v.checked_mul(128)? | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if parts.is_empty() {
                let (a, b) = match v {
                    0..=39 => (0, v),
                    40..=79 => (1, v - 40),
                    _ => (2, v - 80),
                };
                parts.push(a);
                parts.push(b);
            } else {
                parts.push(v);
            }
            v = 0;
        } else if i + 1 == oid.len() {
            return None;
        }
    }
    if parts.is_empty() {
        return None;
    }
    Some(
        parts
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("."),
    )
}

/// `AVA.toRFC2253String`: `type=value`, the value escaped, or `#hex` of
/// its DER encoding when the type has no keyword or the value is not a
/// string Java decodes.
fn ava_rfc2253(mut b: &[u8]) -> Option<String> {
    let (oid, rest) = tlv(b)?;
    if oid.tag != OID {
        return None;
    }
    b = rest;
    let (value, _) = tlv(b)?;
    let (ty, has_keyword) = match keyword(oid.content) {
        Some(k) => (k.to_string(), true),
        None => (dotted(oid.content)?, false),
    };
    let text = if has_keyword {
        decode_string(value.tag, value.content)
    } else {
        None
    };
    let Some(text) = text else {
        let hex: String = value.whole.iter().map(|b| format!("{b:02x}")).collect();
        return Some(format!("{ty}=#{hex}"));
    };
    Some(format!("{ty}={}", escape(&text)))
}

/// The string types `DerValue.isDerString(v, false)` accepts.
fn decode_string(tag: u8, content: &[u8]) -> Option<String> {
    match tag {
        UTF8_STRING => String::from_utf8(content.to_vec()).ok(),
        PRINTABLE_STRING | IA5_STRING | GENERAL_STRING => {
            // Java reads these as ASCII (IA5); anything else is not valid.
            content
                .iter()
                .all(|b| b.is_ascii())
                .then(|| content.iter().map(|b| *b as char).collect())
        }
        // Java reads T61 as ISO 8859-1.
        T61_STRING => Some(content.iter().map(|b| *b as char).collect()),
        BMP_STRING => {
            if content.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = content
                .chunks(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            Some(String::from_utf16_lossy(&units))
        }
        _ => None,
    }
}

/// Java's escaping: `,=+<>#;"\` get a backslash anywhere, NUL is `\00`,
/// and leading/trailing spaces (and CRs) are escaped.
fn escape(v: &str) -> String {
    const ESCAPEES: &str = ",=+<>#;\"\\";
    let mut chars: Vec<String> = Vec::new();
    for c in v.chars() {
        if ESCAPEES.contains(c) {
            chars.push(format!("\\{c}"));
        } else if c == '\0' {
            chars.push("\\00".into());
        } else {
            chars.push(c.to_string());
        }
    }
    let blank = |s: &String| s == " " || s == "\r";
    let lead = chars.iter().take_while(|s| blank(s)).count();
    let trail = chars.iter().rev().take_while(|s| blank(s)).count();
    let n = chars.len();
    let mut out = String::new();
    for (i, s) in chars.iter().enumerate() {
        if i < lead || i >= n - trail {
            out.push('\\');
        }
        out.push_str(s);
    }
    out
}

/// Roughly `new X500Principal(id)` (`X509AuthenticationProvider.isValid`):
/// empty, or `type=value` parts (keyword or dotted OID types) separated by
/// unescaped `,`, `;` or `+`.
pub fn valid_dn(id: &str) -> bool {
    if id.trim().is_empty() {
        return true;
    }
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = id.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                match chars.next() {
                    Some(n) => cur.push(n),
                    None => return false,
                }
            }
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' | ';' | '+' if !quoted => parts.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if quoted {
        return false;
    }
    parts.push(cur);
    parts.iter().all(|p| {
        let Some((ty, _)) = p.split_once('=') else {
            return false;
        };
        let ty = ty.trim();
        let ty = ty
            .strip_prefix("OID.")
            .or_else(|| ty.strip_prefix("oid."))
            .unwrap_or(ty);
        !ty.is_empty()
            && (ty.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && ty.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                || ty
                    .split('.')
                    .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(tag: u8, content: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        if content.len() < 0x80 {
            v.push(content.len() as u8);
        } else {
            v.push(0x82);
            v.extend_from_slice(&(content.len() as u16).to_be_bytes());
        }
        v.extend_from_slice(content);
        v
    }

    fn ava(oid: &[u8], tag: u8, val: &[u8]) -> Vec<u8> {
        let mut c = der(OID, oid);
        c.extend(der(tag, val));
        der(SEQUENCE, &c)
    }

    fn cert_with_subject(rdns: &[Vec<Vec<u8>>]) -> Vec<u8> {
        let mut name = Vec::new();
        for rdn in rdns {
            name.extend(der(SET, &rdn.concat()));
        }
        let mut tbs = der(0xa0, &der(0x02, &[2]));
        tbs.extend(der(0x02, &[1])); // serial
        tbs.extend(der(SEQUENCE, &der(OID, &[0x2a, 0x03]))); // sig alg
        tbs.extend(der(SEQUENCE, &[])); // issuer
        tbs.extend(der(SEQUENCE, &[])); // validity
        tbs.extend(der(SEQUENCE, &name));
        tbs.extend(der(SEQUENCE, &[])); // spki
        let mut c = der(SEQUENCE, &tbs);
        c.extend(der(SEQUENCE, &[])); // algorithm
        c.extend(der(0x03, &[0])); // signature
        der(SEQUENCE, &c)
    }

    #[test]
    fn matches_javas_rfc2253_form() {
        // The form real ZooKeeper 3.8 logged for this subject (openssl
        // -subj "/C=US/O=Acme, Inc./OU=zk+UID=u1/CN=client #2 Ã©/emailAddress=c@x.org").
        let cert = cert_with_subject(&[
            vec![ava(&[0x55, 4, 6], PRINTABLE_STRING, b"US")],
            vec![ava(&[0x55, 4, 10], UTF8_STRING, b"Acme, Inc.")],
            vec![
                ava(&[0x55, 4, 11], UTF8_STRING, b"zk"),
                ava(
                    &[0x09, 0x92, 0x26, 0x89, 0x93, 0xf2, 0x2c, 0x64, 0x01, 0x01],
                    UTF8_STRING,
                    b"u1",
                ),
            ],
            vec![ava(&[0x55, 4, 3], UTF8_STRING, "client #2 Ã©".as_bytes())],
            vec![ava(
                &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x01],
                IA5_STRING,
                b"c@x.org",
            )],
        ]);
        assert_eq!(
            subject_rfc2253(&cert).as_deref(),
            Some(
                "1.2.840.113549.1.9.1=#16076340782e6f7267,CN=client \\#2 Ã©,OU=zk+UID=u1,O=Acme\\, Inc.,C=US"
            )
        );
    }

    #[test]
    fn escapes_and_odd_values() {
        assert_eq!(escape(" a=b "), "\\ a\\=b\\ ");
        assert_eq!(escape("x\0y"), "x\\00y");
        let cert = cert_with_subject(&[vec![ava(&[0x55, 4, 3], BMP_STRING, &[0, b'h', 0, b'i'])]]);
        assert_eq!(subject_rfc2253(&cert).as_deref(), Some("CN=hi"));
        // A keyword type with a non-string value is printed as hex.
        let cert = cert_with_subject(&[vec![ava(&[0x55, 4, 3], 0x02, &[5])]]);
        assert_eq!(subject_rfc2253(&cert).as_deref(), Some("CN=#020105"));
        assert_eq!(subject_rfc2253(&[0x30, 0x05, 1]), None);
        assert_eq!(subject_rfc2253(&[]), None);
    }

    #[test]
    fn dn_validity() {
        assert!(valid_dn("CN=client,O=Acme\\, Inc.,C=US"));
        assert!(valid_dn("1.2.3=#0101+CN=x"));
        assert!(valid_dn(""));
        assert!(!valid_dn("client"));
        assert!(!valid_dn("CN=a,b"));
        assert!(!valid_dn("=x"));
    }
}
