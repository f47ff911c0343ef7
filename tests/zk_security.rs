//! ZooKeeper security, differential: kazoo over TLS (the secure client port,
//! client certificates as `x509` ids) and with SASL DIGEST-MD5 (`sasl` ids),
//! against real ZooKeeper 3.8 and Janus configured alike: the same
//! certificates (made here with openssl), the same users (a JAAS file for
//! ZooKeeper, `[zookeeper.sasl]` for Janus). The normalized results of
//! `crates/zk/testdata/zk_security.py` must agree scenario for scenario.

#[path = "zk_support.rs"]
mod zk_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use janus_tests::free_port;
use serde_json::Value;
use zk_support::{four_letter, run_python, start_janus, Raw};

/// The subject of the `client` certificate as ZooKeeper prints it
/// (`X500Principal.getName()`, RFC 2253): last RDN first, `,` escaped.
const CLIENT_ID: &str = "CN=client,OU=zk,O=Acme\\, Inc.,C=US";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("run openssl (Debian's openssl package)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1, client certificates `client`
/// and `other` from that CA, and `rogue` from another CA. Client
/// certificates carry an extension so they are X.509 v3 (webpki, and any
/// careful verifier, refuses v1).
fn make_certs(dir: &Path) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
    for ca in ["ca", "rogue-ca"] {
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{ca}.key"),
                "-out",
                &format!("{ca}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN=Janus test {ca}"),
            ],
        );
    }
    for (name, subj, ca, ext) in [
        ("server", "/CN=localhost", "ca", "server.ext"),
        (
            "client",
            "/C=US/O=Acme, Inc./OU=zk/CN=client",
            "ca",
            "client.ext",
        ),
        ("other", "/CN=other", "ca", "client.ext"),
        (
            "rogue",
            "/C=US/O=Acme, Inc./OU=zk/CN=client",
            "rogue-ca",
            "client.ext",
        ),
    ] {
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                subj,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}.key"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                ext,
            ],
        );
    }
    // ZooKeeper's PEM key store: key and certificate in one file.
    let key = std::fs::read_to_string(dir.join("server.key")).expect("key");
    let cert = std::fs::read_to_string(dir.join("server.pem")).expect("cert");
    std::fs::write(dir.join("server-keystore.pem"), key + &cert).expect("keystore");
}

/// Real ZooKeeper with a plain and a secure client port (Netty, PEM
/// stores, ssl.clientAuth=want), the x509 and sasl auth providers, and a
/// JAAS `Server` section with DIGEST-MD5 users.
struct SecureZk {
    child: std::process::Child,
    plain: String,
    secure: String,
    dir: tempfile::TempDir,
}

impl SecureZk {
    fn start(certs: &Path) -> SecureZk {
        let dir = tempfile::tempdir().expect("tempdir");
        let (port, sport) = (free_port(), free_port());
        let c = |f: &str| certs.join(f).display().to_string();
        let cfg = dir.path().join("zoo.cfg");
        std::fs::write(
            &cfg,
            format!(
                "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
                 secureClientPort={sport}\nsecureClientPortAddress=127.0.0.1\n\
                 admin.enableServer=false\n\
                 serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
                 ssl.keyStore.location={}\nssl.keyStore.type=PEM\n\
                 ssl.trustStore.location={}\nssl.trustStore.type=PEM\n\
                 ssl.clientAuth=want\n\
                 authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider\n\
                 authProvider.sasl=org.apache.zookeeper.server.auth.SASLAuthenticationProvider\n",
                dir.path().join("data").display(),
                c("server-keystore.pem"),
                c("ca.pem"),
            ),
        )
        .expect("zoo.cfg");
        let jaas = dir.path().join("jaas.conf");
        std::fs::write(
            &jaas,
            "Server {\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  \
             user_bob=\"secret\"\n  user_alice=\"wonder\";\n};\n",
        )
        .expect("jaas");
        let log = std::fs::File::create(dir.path().join("zk.log")).expect("log");
        let child = Command::new("java")
            .arg("-Xmx256m")
            .arg(format!(
                "-Djava.security.auth.login.config={}",
                jaas.display()
            ))
            .args([
                "-Dzookeeper.4lw.commands.whitelist=*",
                // Debian's zookeeper.jar manifest omits netty-codec, which
                // the Netty factory's TLS handler needs.
                "-cp",
                "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/netty-codec.jar",
                "org.apache.zookeeper.server.ZooKeeperServerMain",
            ])
            .arg(&cfg)
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start java");
        let zk = SecureZk {
            child,
            plain: format!("127.0.0.1:{port}"),
            secure: format!("127.0.0.1:{sport}"),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while four_letter(&zk.plain, "ruok") != "imok"
            || std::net::TcpStream::connect(&zk.secure).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "real ZooKeeper did not start: {}",
                std::fs::read_to_string(zk.dir.path().join("zk.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        zk
    }
}

impl Drop for SecureZk {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Java's own client (ZooKeeperMain, as zkCli.sh runs it, with the Netty
/// socket Debian's zkCli.sh classpath lacks) over TLS with the `client`
/// certificate and SASL DIGEST-MD5 from a JAAS `Client` section; commands
/// fed one by one; returns the output lines that are not start-up noise.
fn java_client(addr: &str, certs: &Path, password: &str, commands: &[&str]) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let jaas = dir.path().join("client-jaas.conf");
    std::fs::write(
        &jaas,
        format!(
            "Client {{\n  org.apache.zookeeper.server.auth.DigestLoginModule required\n  \
             username=\"bob\"\n  password=\"{password}\";\n}};\n"
        ),
    )
    .expect("jaas");
    let key = std::fs::read_to_string(certs.join("client.key")).expect("key");
    let cert = std::fs::read_to_string(certs.join("client.pem")).expect("cert");
    let keystore = dir.path().join("client-keystore.pem");
    std::fs::write(&keystore, key + &cert).expect("keystore");
    let mut child = Command::new("java")
        .arg(format!("-Djava.security.auth.login.config={}", jaas.display()))
        .arg("-Dzookeeper.client.secure=true")
        .arg("-Dzookeeper.clientCnxnSocket=org.apache.zookeeper.ClientCnxnSocketNetty")
        .arg(format!("-Dzookeeper.ssl.keyStore.location={}", keystore.display()))
        .arg("-Dzookeeper.ssl.keyStore.type=PEM")
        .arg(format!(
            "-Dzookeeper.ssl.trustStore.location={}",
            certs.join("ca.pem").display()
        ))
        .arg("-Dzookeeper.ssl.trustStore.type=PEM")
        .arg("-Dzookeeper.ssl.hostnameVerification=false")
        .args([
            "-cp",
            "/etc/zookeeper/conf:/usr/share/java/zookeeper.jar:/usr/share/java/netty-codec.jar:/usr/share/java/netty-resolver.jar",
            "org.apache.zookeeper.ZooKeeperMain",
            "-server",
            addr,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("java ZooKeeperMain");
    let mut stdin = child.stdin.take().expect("stdin");
    let cmds: Vec<String> = commands.iter().map(|c| c.to_string()).collect();
    let feeder = std::thread::spawn(move || {
        use std::io::Write;
        std::thread::sleep(Duration::from_millis(3000));
        for c in cmds {
            let _ = writeln!(stdin, "{c}");
            std::thread::sleep(Duration::from_millis(700));
        }
        let _ = writeln!(stdin, "quit");
    });
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        use std::io::Read;
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().ok().flatten().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.wait();
    let _ = feeder.join();
    reader
        .join()
        .unwrap_or_default()
        .lines()
        .map(|l| l.trim_end().to_string())
        .filter(|l| {
            !l.is_empty()
                && !l.starts_with("Connecting to")
                && !l.starts_with("Welcome to ZooKeeper")
                && !l.starts_with("JLine support")
                && !l.starts_with("SLF4J")
        })
        .collect()
}

/// One SASL packet (op 102, GetSASLRequest); the reply as (xid, zxid,
/// err, body).
fn sasl(c: &mut Raw, token: &[u8]) -> (i32, i64, i32, Vec<u8>) {
    let mut body = (token.len() as i32).to_be_bytes().to_vec();
    body.extend_from_slice(token);
    c.send(102, &body);
    c.recv().expect("SASL reply")
}

#[test]
fn kazoo_tls_and_sasl_agree_with_real_zookeeper() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path());
    let c = |f: &str| certs.path().join(f).display().to_string();

    let tmp = tempfile::tempdir().expect("tempdir");
    let secure = format!("127.0.0.1:{}", free_port());
    let janus = start_janus(
        tmp.path(),
        &format!(
            "secure_listen = \"{secure}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
             tls_client_ca = \"{}\"\ntls_client_auth = \"want\"\n\
             [zookeeper.sasl]\nusers = {{ bob = \"secret\", alice = \"wonder\" }}\n",
            c("server.pem"),
            c("server.key"),
            c("ca.pem"),
        ),
    );
    let real = SecureZk::start(certs.path());

    let cert_dir = certs.path().display().to_string();
    let (jp, js, zp, zs) = (
        janus.zk.clone(),
        secure.clone(),
        real.plain.clone(),
        real.secure.clone(),
    );
    let cd = cert_dir.clone();
    let j = std::thread::spawn(move || {
        run_python(
            "zk_security.py",
            &[&jp, &js, &cd, CLIENT_ID],
            Duration::from_secs(180),
        )
    });
    let z = std::thread::spawn(move || {
        run_python(
            "zk_security.py",
            &[&zp, &zs, &cert_dir, CLIENT_ID],
            Duration::from_secs(180),
        )
    });
    let j: BTreeMap<String, Value> =
        serde_json::from_str(&j.join().expect("janus run")).expect("janus json");
    let z: BTreeMap<String, Value> =
        serde_json::from_str(&z.join().expect("zk run")).expect("zk json");

    assert!(z.len() >= 10, "only {} scenarios ran", z.len());
    let mut differ = Vec::new();
    for (name, want) in &z {
        assert!(
            want.get("crash").is_none(),
            "scenario {name} crashed against real ZooKeeper: {want}"
        );
        let got = j.get(name);
        if got != Some(want) {
            differ.push(format!(
                "== {name}\n real zookeeper: {want}\n janus:          {}",
                got.map(|v| v.to_string()).unwrap_or_default()
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} scenarios differ:\n{}",
        differ.len(),
        z.len(),
        differ.join("\n")
    );
    // The scenarios prove something only if the authorized reads worked.
    assert_eq!(
        z["tls_client_cert_x509_acl"]["get"],
        serde_json::json!({"ok": "secret"})
    );
    assert_eq!(
        z["sasl_digest_md5_acl"]["get"],
        serde_json::json!({"ok": "bobs"})
    );
    assert_eq!(
        z["sasl_other_user_noauth"]["get"],
        serde_json::json!({"err": "NoAuthError"})
    );
    for refused in ["sasl_wrong_password", "sasl_unknown_user"] {
        assert_eq!(
            z[refused]["final_state"],
            serde_json::json!("CLOSED"),
            "{refused}: {}",
            z[refused]
        );
    }
    assert_eq!(
        z["tls_untrusted_client_cert_refused"]["start"],
        serde_json::json!({"err": "KazooTimeoutError"})
    );
    println!("{} scenarios agree", z.len());

    // Raw SASL packets: the first token must be empty (the challenge's
    // shape), a bad response gets AUTHFAILED with a null token (zxid 0)
    // and the connection closes; a non-empty first token is ignored.
    for addr in [&janus.zk, &real.plain] {
        let mut c = Raw::connect(addr);
        let (xid, zxid, err, body) = sasl(&mut c, b"");
        assert_eq!((xid, zxid, err), (c.xid, 0, 0), "{addr}");
        let challenge = String::from_utf8_lossy(&body[4..]).into_owned();
        assert!(
            challenge.starts_with("realm=\"zk-sasl-md5\",nonce=\"")
                && challenge.ends_with("\",charset=utf-8,algorithm=md5-sess"),
            "{addr}: {challenge}"
        );
        let (_, zxid, err, body) = sasl(&mut c, b"username=\"bob\",response=00");
        assert_eq!((zxid, err, body), (0, -115, vec![0xff; 4]), "{addr}");
        assert!(c.recv().is_none(), "{addr}: connection left open");
        let mut c = Raw::connect(addr);
        let (_, zxid, err, body) = sasl(&mut c, b"hello");
        assert_eq!((zxid, err), (0, 0), "{addr}");
        assert!(
            String::from_utf8_lossy(&body).contains("algorithm=md5-sess"),
            "{addr}"
        );
    }

    // Java's client (3.8, Debian's): TLS with the client certificate plus
    // SASL; whoAmI (ids in ZooKeeper's order), `auth` expanded to both ids,
    // reads the x509 and sasl ACLs allow.
    let cmds = [
        "whoami",
        "create /java-auth j auth::cdrwa",
        "getAcl /java-auth",
        "get /x509",
        "get /sasl",
        "get /tls-open",
    ];
    let (js, zs) = (secure.clone(), real.secure.clone());
    let (cj, cz) = (certs.path().to_path_buf(), certs.path().to_path_buf());
    let j = std::thread::spawn(move || java_client(&js, &cj, "secret", &cmds));
    let z = std::thread::spawn(move || java_client(&zs, &cz, "secret", &cmds));
    let (j, z) = (j.join().expect("janus java"), z.join().expect("zk java"));
    assert_eq!(j, z, "Java client over TLS + SASL: janus vs real ZooKeeper");
    assert!(
        z.iter().any(|l| l == "sasl: bob")
            && z.iter().any(|l| l == &format!("x509: {CLIENT_ID}"))
            && z.iter().any(|l| l.contains("SaslAuthenticated")),
        "{z:?}"
    );
    // (A wrong password is left to kazoo above: whether Java's client
    // reports AuthFailed or just reconnects races its own event thread
    // against its reconnect, with either server.)

    // Janus's own counters saw the refused certificate and the failed SASL
    // exchanges.
    let (_, metrics) = janus.http_get("/metrics").expect("metrics");
    let value = |name: &str| -> u64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{metrics}"))
    };
    assert!(value("janus_zk_tls_handshake_failures_total ") >= 1);
    assert!(value("janus_zk_auth_failures_total ") >= 2);
    assert_eq!(value("janus_zk_secure_connections "), 0);
}

/// `need` refuses a TLS client without a certificate; `cons` on the secure
/// port lists the secure connections only; `conf` shows the port.
#[test]
fn need_client_auth_and_cons_on_the_secure_port() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path());
    let c = |f: &str| certs.path().join(f).display().to_string();
    let tmp = tempfile::tempdir().expect("tempdir");
    let secure = format!("127.0.0.1:{}", free_port());
    let janus = start_janus(
        tmp.path(),
        &format!(
            "secure_listen = \"{secure}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"\n\
             tls_client_ca = \"{}\"\n",
            c("server.pem"),
            c("server.key"),
            c("ca.pem"),
        ),
    );
    let out = run_python(
        "zk_tls_need.py",
        &[&janus.zk, &secure, &certs.path().display().to_string()],
        Duration::from_secs(60),
    );
    let v: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["no_cert"], serde_json::json!("KazooTimeoutError"), "{v}");
    assert_eq!(v["with_cert"], serde_json::json!("ok"), "{v}");
    let cons = v["cons_secure"].as_str().unwrap_or_default();
    assert_eq!(cons.matches("sid=0x").count(), 1, "{v}");
    let cons_plain = v["cons_plain"].as_str().unwrap_or_default();
    assert_eq!(cons_plain.matches("sid=0x").count(), 1, "{v}");
    let conf = four_letter(&janus.zk, "conf");
    let port = secure.rsplit(':').next().unwrap_or_default();
    assert!(conf.contains(&format!("secureClientPort={port}")), "{conf}");
}
