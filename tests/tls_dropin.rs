//! TLS set up as etcd and ZooKeeper users set it up, against real etcd,
//! real ZooKeeper and Janus:
//!
//! - a self-signed `CA:TRUE` certificate (`openssl req -x509` with
//!   Debian's default configuration) as server, client and CA at once:
//!   etcdctl against real etcd and Janus, zkCli.sh on Janus's secure
//!   ZooKeeper port, and three Janus members using it between peers;
//! - zoo.cfg files with JKS and with PKCS12 key and trust stores made by
//!   keytool, as ZooKeeper's documentation makes them, started unchanged
//!   by real ZooKeeper and by Janus, with zkCli.sh over TLS on both;
//! - `--client-crl-file` with a CRL made by `openssl ca`: a revoked client
//!   certificate refused by real etcd and by Janus, an unrevoked one let in;
//! - `--auto-tls` / `--peer-auto-tls`: etcdctl with
//!   `--insecure-skip-tls-verify` over https against real etcd and Janus,
//!   the certificate files where etcd puts them, and three auto-TLS Janus
//!   members forming a cluster.
//!
//! Needs etcd, etcdctl and openssl (scripts/deps/etcd.sh), ZooKeeper and a
//! JRE with keytool (scripts/deps/zk.sh).

use std::path::Path;
use std::time::{Duration, Instant};

use janus_tests::tls::{
    etcdctl, keytool, openssl, wait_etcdctl_healthy, zk_cli_tls, JanusProc, RealEtcd,
    ZK_NETTY_CLASSPATH,
};
use janus_tests::{free_port, start_cluster, wait_leader, Janus};

fn p(dir: &Path, f: &str) -> String {
    dir.join(f).display().to_string()
}

/// What etcdctl printed, for comparing real etcd's and Janus's answers.
fn outcome((code, out, _): (i32, String, String)) -> String {
    format!("exit {code}\n{out}")
}

#[test]
fn ca_true_self_signed_certificate_is_accepted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Exactly the command of the etcd and ZooKeeper how-tos; Debian's
    // openssl.cnf marks it CA:TRUE (v3_ca).
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "self.key",
            "-out",
            "self.crt",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
    );
    let text = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", &p(d, "self.crt")])
        .output()
        .expect("openssl");
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("CA:TRUE"),
        "the certificate is not a CA certificate; the test proves nothing"
    );

    // etcd's client port, client certificates required.
    let server = vec![
        format!("--cert-file={}", p(d, "self.crt")),
        format!("--key-file={}", p(d, "self.key")),
        format!("--trusted-ca-file={}", p(d, "self.crt")),
        "--client-cert-auth".to_string(),
    ];
    let client = vec![
        format!("--cacert={}", p(d, "self.crt")),
        format!("--cert={}", p(d, "self.crt")),
        format!("--key={}", p(d, "self.key")),
    ];
    let etcd_dir = d.join("etcd");
    std::fs::create_dir_all(&etcd_dir).expect("dir");
    let etcd = RealEtcd::start_with(&etcd_dir, "https", &server, &client);
    let args: Vec<&str> = server.iter().map(String::as_str).collect();
    let janus = Janus::start(&d.join("janus"), &args);
    let janus_ep = format!("https://{}", janus.etcd);
    wait_etcdctl_healthy(&janus_ep, &client);
    for step in [
        vec!["put", "k", "v"],
        vec!["get", "k", "--print-value-only"],
    ] {
        let want = outcome(etcdctl(&etcd.url, &client, &step));
        let got = outcome(etcdctl(&janus_ep, &client, &step));
        assert!(want.starts_with("exit 0"), "real etcd: {want}");
        assert_eq!(got, want, "{step:?}");
    }

    // ZooKeeper's secure client port, client certificates required: the
    // same file as PEM key store (key and certificate) and trust store.
    let key = std::fs::read_to_string(d.join("self.key")).expect("key");
    let cert = std::fs::read_to_string(d.join("self.crt")).expect("cert");
    std::fs::write(d.join("self-keystore.pem"), key + &cert).expect("keystore");
    let secure = format!("127.0.0.1:{}", free_port());
    let toml = d.join("zk.toml");
    std::fs::write(
        &toml,
        format!(
            "[zookeeper]\nsecure_listen = \"{secure}\"\ntls_cert = \"{ks}\"\ntls_key = \"{ks}\"\n\
             tls_client_ca = \"{ca}\"\ntls_client_auth = \"need\"\n",
            ks = p(d, "self-keystore.pem"),
            ca = p(d, "self.crt"),
        ),
    )
    .expect("toml");
    let zk_janus = Janus::start(&d.join("janus-zk"), &["--config", &p(d, "zk.toml")]);
    zk_janus.wait_healthy(Duration::from_secs(30));
    let out = zk_cli_tls(
        &secure,
        &[
            format!(
                "-Dzookeeper.ssl.keyStore.location={}",
                p(d, "self-keystore.pem")
            ),
            "-Dzookeeper.ssl.keyStore.type=PEM".into(),
            format!("-Dzookeeper.ssl.trustStore.location={}", p(d, "self.crt")),
            "-Dzookeeper.ssl.trustStore.type=PEM".into(),
        ],
        &["create /ca-true yes", "get /ca-true"],
    );
    assert!(
        out.contains("Created /ca-true") && out.lines().any(|l| l.trim() == "yes"),
        "zkCli.sh over TLS with the CA:TRUE certificate:\n{out}\n{}",
        zk_janus.log_tail(20)
    );

    // The peer port: three members with it as peer certificate and CA.
    let peer_toml = format!(
        "peer_cert_file = \"{c}\"\npeer_key_file = \"{k}\"\npeer_trusted_ca_file = \"{c}\"\n\
         peer_client_cert_auth = true\n",
        c = p(d, "self.crt"),
        k = p(d, "self.key"),
    );
    std::fs::create_dir_all(d.join("cluster")).expect("dir");
    let members = start_cluster(&d.join("cluster"), 3, &peer_toml);
    wait_leader(&members);
    replicated(&members, "peer", "ca-true");
}

/// A write through the first member is read on every member.
fn replicated(members: &[Janus], key: &str, value: &str) {
    let (code, out, err) = etcdctl(&members[0].etcd, &[], &["put", key, value]);
    assert_eq!(code, 0, "{out}{err}\n{}", members[0].log_tail(30));
    for m in members {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, out, _) = etcdctl(
                &m.etcd,
                &[],
                &["get", key, "--print-value-only", "--consistency=s"],
            );
            if out.trim() == value {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{} never saw the write:\n{}",
                m.etcd,
                m.log_tail(30)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Key and trust stores as ZooKeeper's documentation makes them: a key
/// pair per side (`keytool -genkeypair`), each side's certificate exported
/// and imported into the other's trust store. `ext` is the file extension
/// and `ty` keytool's `-storetype`.
fn keytool_stores(d: &Path, ty: &str, ext: &str) {
    for (who, dname) in [("server", "CN=localhost"), ("client", "CN=zk-client")] {
        keytool(
            d,
            &[
                "-genkeypair",
                "-alias",
                who,
                "-keyalg",
                "RSA",
                "-keysize",
                "2048",
                "-dname",
                dname,
                "-ext",
                "SAN=IP:127.0.0.1,DNS:localhost",
                "-validity",
                "2",
                "-storetype",
                ty,
                "-keystore",
                &format!("{who}-keystore.{ext}"),
                "-storepass",
                &format!("{who}-pass"),
                "-keypass",
                &format!("{who}-pass"),
            ],
        );
        keytool(
            d,
            &[
                "-exportcert",
                "-alias",
                who,
                "-keystore",
                &format!("{who}-keystore.{ext}"),
                "-storepass",
                &format!("{who}-pass"),
                "-file",
                &format!("{who}.cer"),
            ],
        );
    }
    for (who, other) in [("server", "client"), ("client", "server")] {
        keytool(
            d,
            &[
                "-importcert",
                "-noprompt",
                "-alias",
                other,
                "-file",
                &format!("{other}.cer"),
                "-storetype",
                ty,
                "-keystore",
                &format!("{who}-truststore.{ext}"),
                "-storepass",
                &format!("{who}-trust"),
            ],
        );
    }
}

/// A zoo.cfg (`zoo-{name}.cfg`, its own dataDir and ports) with a secure
/// client port and the `.{ext}` stores; the same file serves real
/// ZooKeeper and Janus.
fn secure_zoo_cfg(
    d: &Path,
    name: &str,
    ext: &str,
    with_types: Option<&str>,
) -> (std::path::PathBuf, String) {
    let data = d.join(format!("data-{name}"));
    std::fs::create_dir_all(&data).expect("dataDir");
    let (port, sport) = (free_port(), free_port());
    let types = with_types.map_or(String::new(), |t| {
        format!("ssl.keyStore.type={t}\nssl.trustStore.type={t}\n")
    });
    let cfg = d.join(format!("zoo-{name}.cfg"));
    std::fs::write(
        &cfg,
        format!(
            "tickTime=2000\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
             secureClientPort={sport}\nsecureClientPortAddress=127.0.0.1\n\
             admin.enableServer=false\n\
             serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory\n\
             ssl.keyStore.location={}\nssl.keyStore.password=server-pass\n\
             ssl.trustStore.location={}\nssl.trustStore.password=server-trust\n{types}",
            data.display(),
            p(d, &format!("server-keystore.{ext}")),
            p(d, &format!("server-truststore.{ext}")),
        ),
    )
    .expect("zoo.cfg");
    (cfg, format!("127.0.0.1:{sport}"))
}

fn client_store_flags(d: &Path, ext: &str) -> Vec<String> {
    vec![
        format!(
            "-Dzookeeper.ssl.keyStore.location={}",
            p(d, &format!("client-keystore.{ext}"))
        ),
        "-Dzookeeper.ssl.keyStore.password=client-pass".into(),
        format!(
            "-Dzookeeper.ssl.trustStore.location={}",
            p(d, &format!("client-truststore.{ext}"))
        ),
        "-Dzookeeper.ssl.trustStore.password=client-trust".into(),
    ]
}

/// Real ZooKeeper (ZooKeeperServerMain, with the Netty classes TLS needs)
/// on `cfg`; killed on drop.
struct RealZk(std::process::Child);

impl RealZk {
    fn start(cfg: &Path, secure: &str, log: &Path) -> RealZk {
        let f = std::fs::File::create(log).expect("log");
        let child = std::process::Command::new("java")
            .args([
                "-Xmx256m",
                "-cp",
                ZK_NETTY_CLASSPATH,
                "org.apache.zookeeper.server.ZooKeeperServerMain",
            ])
            .arg(cfg)
            .stdout(std::process::Stdio::from(f.try_clone().expect("log")))
            .stderr(std::process::Stdio::from(f))
            .spawn()
            .expect("java (scripts/deps/zk.sh)");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(secure).is_err() {
            assert!(
                Instant::now() < deadline,
                "real ZooKeeper did not start:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        RealZk(child)
    }
}

impl Drop for RealZk {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn zoo_cfg_with_jks_and_pkcs12_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    // JKS: the type from the `.jks` extension, as ZooKeeper infers it.
    // PKCS12: `.p12`, and `.pfx`, which ZooKeeper does not infer, with
    // the types written out.
    for (ty, ext, types) in [
        ("JKS", "jks", None),
        ("PKCS12", "p12", None),
        ("PKCS12", "pfx", Some("PKCS12")),
    ] {
        let d = dir.path().join(ext);
        std::fs::create_dir_all(&d).expect("dir");
        keytool_stores(&d, ty, ext);
        let mut flags = client_store_flags(&d, ext);
        if let Some(t) = types {
            flags.push(format!("-Dzookeeper.ssl.keyStore.type={t}"));
            flags.push(format!("-Dzookeeper.ssl.trustStore.type={t}"));
        }
        let node = format!("/{ext}");
        let cmds = [format!("create {node} {ty}"), format!("get {node}")];
        let cmds: Vec<&str> = cmds.iter().map(String::as_str).collect();
        let ok = |out: &str| {
            out.contains(&format!("Created {node}")) && out.lines().any(|l| l.trim() == ty)
        };

        let (cfg, secure) = secure_zoo_cfg(&d, "zookeeper", ext, types);
        let real = RealZk::start(&cfg, &secure, &d.join("zk.log"));
        let out = zk_cli_tls(&secure, &flags, &cmds);
        assert!(ok(&out), "real ZooKeeper with {ty} stores:\n{out}");
        drop(real);

        // The same zoo.cfg (a fresh dataDir and ports), started unchanged.
        let (cfg, secure) = secure_zoo_cfg(&d, "janus", ext, types);
        let mut janus = JanusProc::spawn(
            &["zookeeper".into(), cfg.display().to_string()],
            &[
                ("JANUS_ETCD_LISTEN", format!("127.0.0.1:{}", free_port())),
                ("JANUS_PEER_LISTEN", format!("127.0.0.1:{}", free_port())),
            ],
            &d.join("janus.log"),
        );
        janus.wait_port(&secure);
        let out = zk_cli_tls(&secure, &flags, &cmds);
        assert!(ok(&out), "Janus with {ty} stores:\n{out}\n{}", janus.log());

        // A client the server's trust store does not hold is refused
        // (once: the refused client waits out its session timeout).
        if ext != "jks" {
            continue;
        }
        let mut stranger = flags.clone();
        stranger[0] = format!(
            "-Dzookeeper.ssl.keyStore.location={}",
            p(&d, &format!("server-keystore.{ext}"))
        );
        stranger[1] = "-Dzookeeper.ssl.keyStore.password=server-pass".into();
        let out = zk_cli_tls(&secure, &stranger, &["get /nothing-here"]);
        assert!(
            !out.contains("Node does not exist") && !out.contains("cZxid"),
            "Janus let in a client its trust store does not hold:\n{out}"
        );
    }

    // A wrong store password stops the start, with Java's words.
    let d = dir.path().join("jks");
    let (cfg, _) = secure_zoo_cfg(&d, "bad", "jks", None);
    let text = std::fs::read_to_string(&cfg).expect("cfg");
    let bad = d.join("zoo-bad.cfg");
    std::fs::write(
        &bad,
        text.replace(
            "ssl.keyStore.password=server-pass",
            "ssl.keyStore.password=nope",
        ),
    )
    .expect("cfg");
    let mut janus = JanusProc::spawn(
        &["zookeeper".into(), bad.display().to_string()],
        &[
            ("JANUS_ETCD_LISTEN", format!("127.0.0.1:{}", free_port())),
            ("JANUS_PEER_LISTEN", format!("127.0.0.1:{}", free_port())),
        ],
        &d.join("janus-bad.log"),
    );
    let st = janus.wait_exit(Duration::from_secs(30));
    assert!(
        st.is_some_and(|s| !s.success()),
        "started with a wrong key store password"
    );
    assert!(
        janus
            .log()
            .contains("Keystore was tampered with, or password was incorrect"),
        "{}",
        janus.log()
    );
}

/// A CA kept by `openssl ca` (index, serial, CRL number), a server
/// certificate and clients `good` and `revoked`, the latter revoked in
/// `crl.pem`.
fn openssl_ca(d: &Path) {
    std::fs::write(
        d.join("ca.cnf"),
        "[ca]\ndefault_ca = CA_default\n[CA_default]\ndir = .\ndatabase = index.txt\n\
         new_certs_dir = .\ncertificate = ca.crt\nprivate_key = ca.key\nserial = serial\n\
         crlnumber = crlnumber\ndefault_md = sha256\ndefault_days = 2\ndefault_crl_days = 2\n\
         policy = policy_any\n[policy_any]\ncommonName = supplied\n",
    )
    .expect("ca.cnf");
    std::fs::write(d.join("index.txt"), "").expect("index");
    std::fs::write(d.join("serial"), "1000\n").expect("serial");
    std::fs::write(d.join("crlnumber"), "1000\n").expect("crlnumber");
    std::fs::write(
        d.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .expect("ext");
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=crl-test-ca",
        ],
    );
    for name in ["server", "good", "revoked"] {
        openssl(
            d,
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
                &format!("/CN={name}"),
            ],
        );
        openssl(
            d,
            &[
                "ca",
                "-batch",
                "-config",
                "ca.cnf",
                "-in",
                &format!("{name}.csr"),
                "-out",
                &format!("{name}.crt"),
                "-extfile",
                "leaf.ext",
            ],
        );
    }
    openssl(d, &["ca", "-config", "ca.cnf", "-revoke", "revoked.crt"]);
    openssl(
        d,
        &["ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem"],
    );
}

#[test]
fn client_crl_file_refuses_revoked_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path().join("ca");
    std::fs::create_dir_all(&d).expect("dir");
    openssl_ca(&d);
    let server = vec![
        format!("--cert-file={}", p(&d, "server.crt")),
        format!("--key-file={}", p(&d, "server.key")),
        format!("--trusted-ca-file={}", p(&d, "ca.crt")),
        "--client-cert-auth".to_string(),
        format!("--client-crl-file={}", p(&d, "crl.pem")),
    ];
    let client = |who: &str| {
        vec![
            format!("--cacert={}", p(&d, "ca.crt")),
            format!("--cert={}", p(&d, &format!("{who}.crt"))),
            format!("--key={}", p(&d, &format!("{who}.key"))),
            "--command-timeout=3s".to_string(),
        ]
    };
    let etcd_dir = dir.path().join("etcd");
    std::fs::create_dir_all(&etcd_dir).expect("dir");
    let etcd = RealEtcd::start_with(&etcd_dir, "https", &server, &client("good"));
    // Janus as etcd starts it: `janus etcd` with the same flags.
    let (c, pp) = (free_port(), free_port());
    let mut args = vec![
        "etcd".to_string(),
        "--name=default".into(),
        format!("--data-dir={}", dir.path().join("janus").display()),
        format!("--listen-client-urls=https://127.0.0.1:{c}"),
        format!("--advertise-client-urls=https://127.0.0.1:{c}"),
        format!("--listen-peer-urls=http://127.0.0.1:{pp}"),
        format!("--initial-advertise-peer-urls=http://127.0.0.1:{pp}"),
        format!("--initial-cluster=default=http://127.0.0.1:{pp}"),
    ];
    args.extend(server.iter().cloned());
    let mut janus = JanusProc::spawn(
        &args,
        &[("JANUS_ZK_LISTEN", format!("127.0.0.1:{}", free_port()))],
        &dir.path().join("janus.log"),
    );
    let janus_ep = format!("https://127.0.0.1:{c}");
    janus.wait_port(&format!("127.0.0.1:{c}"));
    wait_etcdctl_healthy(&janus_ep, &client("good"));
    for (ep, what) in [(&etcd.url, "real etcd"), (&janus_ep, "Janus")] {
        let (code, out, err) = etcdctl(ep, &client("good"), &["put", "crl", "ok"]);
        assert_eq!(code, 0, "{what} refused the unrevoked client: {out}{err}");
        let (code, out, err) = etcdctl(ep, &client("revoked"), &["get", "crl"]);
        assert_ne!(
            code,
            0,
            "{what} let the revoked client in: {out}{err}\n{}",
            janus.log()
        );
        let (code, out, _) = etcdctl(ep, &client("good"), &["get", "crl", "--print-value-only"]);
        assert_eq!((code, out.trim()), (0, "ok"), "{what}");
    }
}

/// `janus etcd` / `etcd` flags for an auto-TLS member `name` of `cluster`.
fn auto_tls_flags(name: &str, data: &Path, client: u16, peer: u16, cluster: &str) -> Vec<String> {
    vec![
        format!("--name={name}"),
        format!("--data-dir={}", data.display()),
        "--auto-tls".into(),
        "--peer-auto-tls".into(),
        format!("--listen-client-urls=https://127.0.0.1:{client}"),
        format!("--advertise-client-urls=https://127.0.0.1:{client}"),
        format!("--listen-peer-urls=https://127.0.0.1:{peer}"),
        format!("--initial-advertise-peer-urls=https://127.0.0.1:{peer}"),
        format!("--initial-cluster={cluster}"),
    ]
}

#[test]
fn auto_tls_serves_https_and_forms_a_peer_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let insecure = vec![
        "--insecure-skip-tls-verify".to_string(),
        "--insecure-transport=false".to_string(),
    ];

    // One member, real etcd and Janus alike.
    let mut eps = Vec::new();
    let mut procs = Vec::new();
    for who in ["etcd", "janus"] {
        let (c, pp) = (free_port(), free_port());
        let data = d.join(format!("{who}-data"));
        let flags = auto_tls_flags(
            "default",
            &data,
            c,
            pp,
            &format!("default=https://127.0.0.1:{pp}"),
        );
        let log = d.join(format!("{who}.log"));
        let proc = if who == "etcd" {
            let f = std::fs::File::create(&log).expect("log");
            let child = std::process::Command::new("etcd")
                .args(&flags)
                .stdout(std::process::Stdio::from(f.try_clone().expect("log")))
                .stderr(std::process::Stdio::from(f))
                .spawn()
                .expect("etcd (scripts/deps/etcd.sh)");
            Err(KillOnDrop(child))
        } else {
            let mut args = vec!["etcd".to_string()];
            args.extend(flags);
            Ok(JanusProc::spawn(
                &args,
                &[("JANUS_ZK_LISTEN", format!("127.0.0.1:{}", free_port()))],
                &log,
            ))
        };
        let ep = format!("https://127.0.0.1:{c}");
        wait_etcdctl_healthy(&ep, &insecure);
        // etcd's files, where etcd puts them.
        for f in [
            "client/cert.pem",
            "client/key.pem",
            "peer/cert.pem",
            "peer/key.pem",
        ] {
            assert!(
                data.join("fixtures").join(f).exists(),
                "{who}: no fixtures/{f}"
            );
        }
        eps.push(ep);
        procs.push(proc);
    }
    for step in [vec!["put", "auto", "tls"], vec!["get", "auto"]] {
        let want = outcome(etcdctl(&eps[0], &insecure, &step));
        let got = outcome(etcdctl(&eps[1], &insecure, &step));
        assert!(want.starts_with("exit 0"), "real etcd: {want}");
        assert_eq!(got, want, "{step:?}");
    }
    // Verifying the self-signed certificate fails, as against etcd.
    let (code, _, _) = etcdctl(
        &eps[1],
        &["--command-timeout=3s".to_string()],
        &["get", "auto"],
    );
    assert_ne!(code, 0, "etcdctl verified a self-signed certificate");
    drop(procs);

    // Three Janus members, peers over auto TLS.
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let cluster = ports
        .iter()
        .enumerate()
        .map(|(i, (_, pp))| format!("m{i}=https://127.0.0.1:{pp}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut members: Vec<JanusProc> = ports
        .iter()
        .enumerate()
        .map(|(i, (c, pp))| {
            let mut args = vec!["etcd".to_string()];
            args.extend(auto_tls_flags(
                &format!("m{i}"),
                &d.join(format!("m{i}")),
                *c,
                *pp,
                &cluster,
            ));
            JanusProc::spawn(
                &args,
                &[("JANUS_ZK_LISTEN", format!("127.0.0.1:{}", free_port()))],
                &d.join(format!("m{i}.log")),
            )
        })
        .collect();
    for (m, (c, _)) in members.iter_mut().zip(&ports) {
        m.wait_port(&format!("127.0.0.1:{c}"));
    }
    let eps: Vec<String> = ports
        .iter()
        .map(|(c, _)| format!("https://127.0.0.1:{c}"))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (code, _, _) = etcdctl(&eps[0], &insecure, &["put", "cluster", "auto"]);
        if code == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no write accepted by the auto-TLS cluster:\n{}",
            members[0].log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for (ep, m) in eps.iter().zip(&members) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (_, out, _) = etcdctl(ep, &insecure, &["get", "cluster", "--print-value-only"]);
            if out.trim() == "auto" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{ep} never read the write:\n{}",
                m.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    // Every member publishes itself (name, https client URL) once it runs.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, out, _) = etcdctl(&eps[2], &insecure, &["member", "list"]);
        if out.matches(", started, m").count() == 3 {
            assert_eq!(out.matches(", https://127.0.0.1:").count(), 3, "{out}");
            break;
        }
        assert!(Instant::now() < deadline, "members not started:\n{out}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A child process killed on drop.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
