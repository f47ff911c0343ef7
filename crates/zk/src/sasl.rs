//! SASL DIGEST-MD5 (RFC 2831), server side, as ZooKeeper's
//! `ZooKeeperSaslServer` runs it through Java's DIGEST-MD5 SaslServer with
//! protocol `zookeeper` and server name / realm `zk-sasl-md5`:
//!
//! 1. the client's first token is empty (ignored); the server answers with a
//!    challenge (`realm`, `nonce`, `charset=utf-8`, `algorithm=md5-sess`;
//!    Java leaves `qop` out when only `auth` is offered);
//! 2. the client answers with its digest response; the server checks it
//!    against the configured password and answers `rspauth=...`; the
//!    connection is then authenticated as the user name (`sasl` scheme).
//!
//! Any failure ends the exchange: ZooKeeper answers AUTHFAILED and closes.

use std::collections::BTreeMap;

use base64::Engine;
use md5::{Digest, Md5};

/// ZooKeeper's DIGEST-MD5 realm and server name (`SecurityUtils`).
pub const REALM: &str = "zk-sasl-md5";
/// The SASL protocol (service) name ZooKeeper registers.
pub const PROTOCOL: &str = "zookeeper";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SaslError {
    #[error("DIGEST-MD5 authentication already complete")]
    Complete,
    #[error("DIGEST-MD5: digest response format violation: {0}")]
    Format(&'static str),
    #[error("DIGEST-MD5: user {0:?} not found")]
    UnknownUser(String),
    #[error("DIGEST-MD5: digest response format violation. Mismatched response.")]
    Mismatch,
}

enum State {
    Start,
    Challenged { nonce: String },
    Done,
}

/// One connection's DIGEST-MD5 exchange.
pub struct DigestMd5 {
    state: State,
}

impl Default for DigestMd5 {
    fn default() -> Self {
        DigestMd5 {
            state: State::Start,
        }
    }
}

impl DigestMd5 {
    /// One client token. `Ok((reply, Some(user)))` when the exchange
    /// completes with `user` authenticated; `fill_random` supplies the
    /// nonce's random bytes.
    pub fn step(
        &mut self,
        token: &[u8],
        users: &BTreeMap<String, String>,
        fill_random: impl FnOnce(&mut [u8]),
    ) -> Result<(Vec<u8>, Option<String>), SaslError> {
        match std::mem::replace(&mut self.state, State::Done) {
            State::Start => {
                // The client's first token is empty for DIGEST-MD5; Java's
                // server answers the challenge whatever it holds, and so
                // does Janus.
                let _ = token;
                // Java uses 30 random bytes, 40 base64 characters.
                let mut raw = [0u8; 30];
                fill_random(&mut raw);
                let nonce = base64::engine::general_purpose::STANDARD.encode(raw);
                let challenge =
                    format!("realm=\"{REALM}\",nonce=\"{nonce}\",charset=utf-8,algorithm=md5-sess");
                self.state = State::Challenged { nonce };
                Ok((challenge.into_bytes(), None))
            }
            State::Challenged { nonce } => {
                let (rspauth, user) = verify(token, &nonce, users)?;
                Ok((format!("rspauth={rspauth}").into_bytes(), Some(user)))
            }
            State::Done => Err(SaslError::Complete),
        }
    }
}

/// `key=value` or `key="quoted"` pairs separated by commas (RFC 2831's
/// `#rule`: empty elements and linear white space allowed).
fn parse(token: &str) -> Result<BTreeMap<String, String>, SaslError> {
    let mut out = BTreeMap::new();
    let b = token.as_bytes();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        while i < b.len() && b[i] == b',' {
            i += 1;
            skip_ws(&mut i);
        }
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b',' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' {
            return Err(SaslError::Format("missing '='"));
        }
        let key = token[start..i].trim().to_ascii_lowercase();
        i += 1;
        skip_ws(&mut i);
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut v = Vec::new();
            loop {
                match b.get(i) {
                    None => return Err(SaslError::Format("unterminated quoted string")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let Some(c) = b.get(i + 1) else {
                            return Err(SaslError::Format("unterminated quoted string"));
                        };
                        v.push(*c);
                        i += 2;
                    }
                    Some(c) => {
                        v.push(*c);
                        i += 1;
                    }
                }
            }
            String::from_utf8(v).map_err(|_| SaslError::Format("value not UTF-8"))?
        } else {
            let s = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            token[s..i].trim().to_string()
        };
        // RFC 2831: a directive appearing twice is an error.
        if out.insert(key, value).is_some() {
            return Err(SaslError::Format("duplicate directive"));
        }
        skip_ws(&mut i);
        if i < b.len() && b[i] != b',' {
            return Err(SaslError::Format("garbage after a value"));
        }
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 2831: with charset=utf-8, a string whose characters all fit in
/// ISO 8859-1 is hashed as ISO 8859-1 (Java does the same).
fn charset_bytes(s: &str) -> Vec<u8> {
    if s.chars().all(|c| (c as u32) < 0x100) {
        s.chars().map(|c| c as u32 as u8).collect()
    } else {
        s.as_bytes().to_vec()
    }
}

/// `HEX(KD(HEX(H(A1)), nonce:nc:cnonce:qop:HEX(H(A2))))` for `a2_prefix`
/// `AUTHENTICATE` (the client's response) or empty (rspauth).
#[allow(clippy::too_many_arguments)]
fn digest(
    user: &str,
    realm: &str,
    password: &str,
    nonce: &str,
    cnonce: &str,
    authzid: Option<&str>,
    nc: &str,
    qop: &str,
    uri: &str,
    a2_prefix: &str,
) -> String {
    let mut h = Md5::new();
    h.update(charset_bytes(user));
    h.update(b":");
    h.update(charset_bytes(realm));
    h.update(b":");
    h.update(charset_bytes(password));
    let mut a1 = h.finalize().to_vec();
    a1.extend_from_slice(format!(":{nonce}:{cnonce}").as_bytes());
    if let Some(z) = authzid {
        a1.push(b':');
        a1.extend_from_slice(z.as_bytes());
    }
    let ha1 = hex(&Md5::digest(&a1));
    let ha2 = hex(&Md5::digest(format!("{a2_prefix}:{uri}").as_bytes()));
    hex(&Md5::digest(
        format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes(),
    ))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a digest response; returns (rspauth, authenticated user).
fn verify(
    token: &[u8],
    nonce: &str,
    users: &BTreeMap<String, String>,
) -> Result<(String, String), SaslError> {
    let text = std::str::from_utf8(token).map_err(|_| SaslError::Format("not UTF-8"))?;
    let d = parse(text)?;
    let get = |k: &'static str| d.get(k).map(String::as_str);
    if let Some(cs) = get("charset") {
        if !cs.eq_ignore_ascii_case("utf-8") {
            return Err(SaslError::Format("charset"));
        }
    }
    let user = get("username").ok_or(SaslError::Format("missing username"))?;
    // A client that sends no realm hashes with the empty one.
    let realm = get("realm").unwrap_or("");
    if !realm.is_empty() && realm != REALM {
        return Err(SaslError::Format("unknown realm"));
    }
    if get("nonce") != Some(nonce) {
        return Err(SaslError::Format("mismatched nonce"));
    }
    let cnonce = get("cnonce").ok_or(SaslError::Format("missing cnonce"))?;
    let nc = get("nc").ok_or(SaslError::Format("missing nonce-count"))?;
    if u32::from_str_radix(nc, 16) != Ok(1) || nc.len() != 8 {
        return Err(SaslError::Format("nonce-count"));
    }
    let qop = get("qop").unwrap_or("auth");
    if qop != "auth" {
        // Only `auth` is offered: no integrity or privacy layer.
        return Err(SaslError::Format("qop"));
    }
    let uri = get("digest-uri").ok_or(SaslError::Format("missing digest-uri"))?;
    let mut parts = uri.split('/');
    let (serv, host) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if serv != PROTOCOL || !host.eq_ignore_ascii_case(REALM) {
        return Err(SaslError::Format("mismatched URI"));
    }
    let response = get("response").ok_or(SaslError::Format("missing response"))?;
    let authzid = get("authzid");
    let password = users
        .get(user)
        .ok_or_else(|| SaslError::UnknownUser(user.to_string()))?;
    let want = digest(
        user,
        realm,
        password,
        nonce,
        cnonce,
        authzid,
        nc,
        qop,
        uri,
        "AUTHENTICATE",
    );
    if !constant_time_eq(want.as_bytes(), response.to_ascii_lowercase().as_bytes()) {
        return Err(SaslError::Mismatch);
    }
    let rspauth = digest(
        user, realm, password, nonce, cnonce, authzid, nc, qop, uri, "",
    );
    // ZooKeeper's callback authorizes the authentication id whatever
    // authzid says, and that id is what ACLs see.
    Ok((rspauth, user.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2831_example() {
        // RFC 2831 section 4 (IMAP example; qop=auth, md5-sess).
        let r = digest(
            "chris",
            "elwood.innosoft.com",
            "secret",
            "OA6MG9tEQGm2hh",
            "OA6MHXh6VqTrRk",
            None,
            "00000001",
            "auth",
            "imap/elwood.innosoft.com",
            "AUTHENTICATE",
        );
        assert_eq!(r, "d388dad90d4bbd760a152321f2143af7");
        let rsp = digest(
            "chris",
            "elwood.innosoft.com",
            "secret",
            "OA6MG9tEQGm2hh",
            "OA6MHXh6VqTrRk",
            None,
            "00000001",
            "auth",
            "imap/elwood.innosoft.com",
            "",
        );
        assert_eq!(rsp, "ea40f60335c427b5527b84dbabcdfffd");
    }

    fn users() -> BTreeMap<String, String> {
        [("bob".to_string(), "secret".to_string())]
            .into_iter()
            .collect()
    }

    fn client_response(challenge: &str, password: &str) -> String {
        let d = parse(challenge).unwrap();
        let nonce = &d["nonce"];
        let uri = "zookeeper/zk-sasl-md5";
        let r = digest(
            "bob",
            REALM,
            password,
            nonce,
            "abc",
            None,
            "00000001",
            "auth",
            uri,
            "AUTHENTICATE",
        );
        format!("charset=utf-8,username=\"bob\",realm=\"{REALM}\",nonce=\"{nonce}\",nc=00000001,cnonce=\"abc\",digest-uri=\"{uri}\",maxbuf=65536,response={r},qop=auth")
    }

    #[test]
    fn full_exchange() {
        let mut s = DigestMd5::default();
        let (ch, user) = s.step(b"", &users(), |b| b.fill(7)).unwrap();
        assert_eq!(user, None);
        let ch = String::from_utf8(ch).unwrap();
        assert!(ch.starts_with("realm=\"zk-sasl-md5\",nonce=\""), "{ch}");
        assert!(ch.ends_with("\",charset=utf-8,algorithm=md5-sess"), "{ch}");
        let resp = client_response(&ch, "secret");
        let (rsp, user) = s.step(resp.as_bytes(), &users(), |_| {}).unwrap();
        assert_eq!(user.as_deref(), Some("bob"));
        assert!(String::from_utf8(rsp).unwrap().starts_with("rspauth="));
        assert_eq!(s.step(b"", &users(), |_| {}), Err(SaslError::Complete));
    }

    #[test]
    fn failures() {
        let mut s = DigestMd5::default();
        assert!(s.step(b"x", &users(), |_| {}).is_ok());
        let mut s = DigestMd5::default();
        let (ch, _) = s.step(b"", &users(), |b| b.fill(1)).unwrap();
        let resp = client_response(std::str::from_utf8(&ch).unwrap(), "wrong");
        assert_eq!(
            s.step(resp.as_bytes(), &users(), |_| {}),
            Err(SaslError::Mismatch)
        );
        let mut s = DigestMd5::default();
        let (ch, _) = s.step(b"", &users(), |b| b.fill(1)).unwrap();
        let resp = client_response(std::str::from_utf8(&ch).unwrap(), "secret");
        let nobody = BTreeMap::new();
        assert!(matches!(
            s.step(resp.as_bytes(), &nobody, |_| {}),
            Err(SaslError::UnknownUser(_))
        ));
        let mut s = DigestMd5::default();
        s.step(b"", &users(), |b| b.fill(1)).unwrap();
        assert!(s.step(b"hello", &users(), |_| {}).is_err());
        assert!(parse("a=\"unterminated").is_err());
        assert_eq!(
            parse(" a = b ,, c=\"x\\\"y\" ").unwrap(),
            [("a".into(), "b".into()), ("c".into(), "x\"y".into())]
                .into_iter()
                .collect()
        );
    }
}
