//! A three-member Janus started from etcd's command line exactly as a
//! kubeadm static pod manifest passes it (`--flag=value`, sorted, TLS for
//! clients and peers with client certificates required, two client
//! listeners: loopback and the node's address), then driven by real
//! etcdctl (Debian's): put/get through every listener, member list,
//! endpoint status. One member runs as `etcd` (a symlink to the binary, as
//! the manifest's `command: [etcd, ...]` would), the others as
//! `janus etcd`. Also: a refused flag stops the start with a clear message.
//!
//! Each member's "node address" is its own loopback address
//! (127.0.0.11-13), so the three can share one host with kubeadm's layout.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use janus_tests::{free_port, http_get, janus_bin};

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .output()
        .expect("openssl (scripts/deps/etcd.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// kubeadm's etcd PKI in miniature: etcd/ca, a server and a peer
/// certificate (both for every member's address), and the
/// healthcheck-client certificate etcdctl uses.
fn make_pki(dir: &Path) -> PathBuf {
    let pki = dir.join("pki/etcd");
    std::fs::create_dir_all(&pki).expect("pki dir");
    openssl(
        &pki,
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
            "/CN=etcd-ca",
        ],
    );
    std::fs::write(
        pki.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n\
         extendedKeyUsage=serverAuth,clientAuth\n\
         subjectAltName=DNS:localhost,IP:127.0.0.1,IP:127.0.0.11,IP:127.0.0.12,IP:127.0.0.13,IP:::1\n",
    )
    .expect("ext");
    for (name, cn) in [
        ("server", "cp"),
        ("peer", "cp"),
        ("healthcheck-client", "kube-etcd-healthcheck-client"),
    ] {
        openssl(
            &pki,
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
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            &pki,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.crt"),
                "-days",
                "2",
                "-extfile",
                "leaf.ext",
            ],
        );
    }
    pki
}

/// A process killed on drop.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Member {
    name: String,
    ip: String,
    client_port: u16,
    peer_port: u16,
    metrics_port: u16,
}

impl Member {
    /// kubeadm's `getEtcdCommand` for this member, argument for argument
    /// (kubeadm sorts them by name and joins `--name=value`).
    fn kubeadm_flags(&self, pki: &Path, data: &Path, cluster: &str) -> Vec<String> {
        let p = |f: &str| pki.join(f).display().to_string();
        let (ip, c, pp) = (&self.ip, self.client_port, self.peer_port);
        vec![
            format!("--advertise-client-urls=https://{ip}:{c}"),
            format!("--cert-file={}", p("server.crt")),
            "--client-cert-auth=true".into(),
            format!("--data-dir={}", data.display()),
            "--experimental-initial-corrupt-check=true".into(),
            "--experimental-watch-progress-notify-interval=5s".into(),
            format!("--initial-advertise-peer-urls=https://{ip}:{pp}"),
            format!("--initial-cluster={cluster}"),
            format!("--key-file={}", p("server.key")),
            format!("--listen-client-urls=https://127.0.0.1:{c},https://{ip}:{c}"),
            format!(
                "--listen-metrics-urls=http://127.0.0.1:{}",
                self.metrics_port
            ),
            format!("--listen-peer-urls=https://{ip}:{pp}"),
            format!("--name={}", self.name),
            format!("--peer-cert-file={}", p("peer.crt")),
            "--peer-client-cert-auth=true".into(),
            format!("--peer-key-file={}", p("peer.key")),
            format!("--peer-trusted-ca-file={}", p("ca.crt")),
            "--snapshot-count=10000".into(),
            format!("--trusted-ca-file={}", p("ca.crt")),
        ]
    }
}

/// etcdctl with the healthcheck client's certificate: (exit, stdout, stderr).
fn ctl(pki: &Path, endpoints: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new("timeout")
        .args(["-s", "INT", "20", "etcdctl"])
        .arg(format!("--endpoints={endpoints}"))
        .arg(format!("--cacert={}", pki.join("ca.crt").display()))
        .arg(format!(
            "--cert={}",
            pki.join("healthcheck-client.crt").display()
        ))
        .arg(format!(
            "--key={}",
            pki.join("healthcheck-client.key").display()
        ))
        .args(args)
        .env("ETCDCTL_API", "3")
        .stdin(Stdio::null())
        .output()
        .expect("etcdctl (scripts/deps/etcd.sh installs it)");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn kubeadm_static_pod_flags_start_a_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path());
    // The manifest runs `etcd`: a symlink with that name to the binary.
    let bin_dir = dir.path().join("bin");
    std::fs::create_dir_all(&bin_dir).expect("bin dir");
    std::os::unix::fs::symlink(janus_bin(), bin_dir.join("etcd")).expect("symlink");

    let members: Vec<Member> = ["cp-1", "cp-2", "cp-3"]
        .iter()
        .enumerate()
        .map(|(i, n)| Member {
            name: n.to_string(),
            ip: format!("127.0.0.{}", 11 + i),
            client_port: free_port(),
            peer_port: free_port(),
            metrics_port: free_port(),
        })
        .collect();
    // kubeadm lists the members as it learns them; any order gives the
    // same ids (names sorted).
    let cluster = [2usize, 0, 1]
        .iter()
        .map(|&i| {
            let m = &members[i];
            format!("{}=https://{}:{}", m.name, m.ip, m.peer_port)
        })
        .collect::<Vec<_>>()
        .join(",");
    let procs: Vec<Proc> = members
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let data = dir.path().join(format!("var-lib-etcd-{}", i + 1));
            let flags = m.kubeadm_flags(&pki, &data, &cluster);
            let log = dir.path().join(format!("{}.log", m.name));
            let f = std::fs::File::create(&log).expect("log");
            let mut cmd = if i == 0 {
                Command::new(bin_dir.join("etcd"))
            } else {
                let mut c = Command::new(janus_bin());
                c.arg("etcd");
                c
            };
            let child = cmd
                .args(&flags)
                // Not an etcd flag: keep the ZooKeeper personality of the
                // three members on ports of their own.
                .env("JANUS_ZK_LISTEN", format!("127.0.0.1:{}", free_port()))
                .stdout(Stdio::from(f.try_clone().expect("log")))
                .stderr(Stdio::from(f))
                .spawn()
                .expect("spawn janus");
            Proc { child, log }
        })
        .collect();

    // The metrics listener answers kubeadm's probes; /readyz once there is
    // a leader (a serializable /health does not ask for one, as etcd 3.5's).
    for (m, p) in members.iter().zip(&procs) {
        let addr = format!("127.0.0.1:{}", m.metrics_port);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok((200, body)) = http_get(&addr, "/health?exclude=NOSPACE&serializable=true") {
                let ready = http_get(&addr, "/readyz").map(|r| r.0).ok() == Some(200);
                if body.contains("\"health\":\"true\"") && ready {
                    break;
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&p.log).unwrap_or_default();
                panic!("{} not healthy on its metrics URL; log:\n{log}", m.name);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(http_get(&addr, "/livez").map(|r| r.0).ok(), Some(200));
        assert_eq!(http_get(&addr, "/readyz").map(|r| r.0).ok(), Some(200));
        let (code, metrics) = http_get(&addr, "/metrics").expect("metrics");
        assert_eq!(code, 200);
        assert!(metrics.contains("etcd_server_has_leader"), "{metrics}");
    }
    // The ignored kubeadm flag was logged, not refused.
    let log = std::fs::read_to_string(&procs[0].log).unwrap_or_default();
    assert!(
        log.contains("experimental-initial-corrupt-check"),
        "no warning for the ignored flag:\n{log}"
    );

    let node_eps: Vec<String> = members
        .iter()
        .map(|m| format!("https://{}:{}", m.ip, m.client_port))
        .collect();
    let all = node_eps.join(",");
    let (code, out, err) = ctl(&pki, &node_eps[0], &["put", "/registry/flags", "kubeadm"]);
    assert_eq!(code, 0, "put: {out}{err}");
    assert_eq!(out.trim(), "OK");
    // Every member, through both of its listeners (the apiserver uses the
    // loopback one on its own node).
    for m in &members {
        for ep in [
            format!("https://127.0.0.1:{}", m.client_port),
            format!("https://{}:{}", m.ip, m.client_port),
        ] {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (code, out, err) = ctl(
                    &pki,
                    &ep,
                    &[
                        "get",
                        "/registry/flags",
                        "--print-value-only",
                        "--consistency=s",
                    ],
                );
                if code == 0 && out.trim() == "kubeadm" {
                    break;
                }
                assert!(Instant::now() < deadline, "{ep}: {out}{err}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    let (code, out, err) = ctl(&pki, &node_eps[1], &["get", "/registry/flags"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "/registry/flags\nkubeadm\n");

    // member list: the names and advertised URLs of the manifests, once
    // each member has published them.
    let deadline = Instant::now() + Duration::from_secs(20);
    let list = loop {
        let (code, out, err) = ctl(&pki, &node_eps[2], &["member", "list"]);
        assert_eq!(code, 0, "member list: {err}");
        if out.lines().count() == 3 && members.iter().all(|m| out.contains(&m.name)) {
            break out;
        }
        assert!(Instant::now() < deadline, "member list: {out}");
        std::thread::sleep(Duration::from_millis(200));
    };
    for m in &members {
        let line = list
            .lines()
            .find(|l| l.contains(&format!(", {}, ", m.name)))
            .unwrap_or_else(|| panic!("no line for {}: {list}", m.name));
        assert!(line.starts_with(|c: char| c.is_ascii_hexdigit()), "{line}");
        assert!(line.contains("started"), "{line}");
        assert!(
            line.contains(&format!("https://{}:{}", m.ip, m.client_port)),
            "advertised client URL missing: {line}"
        );
        assert!(
            line.contains(&format!("{}:{}", m.ip, m.peer_port)),
            "{line}"
        );
        assert!(line.ends_with("false"), "not a learner: {line}");
    }

    // endpoint status: one leader, the same raft term, every member.
    let (code, out, err) = ctl(&pki, &all, &["endpoint", "status", "-w", "json"]);
    assert_eq!(code, 0, "endpoint status: {err}");
    let status: serde_json::Value = serde_json::from_str(&out).expect("status json");
    let rows = status.as_array().expect("array");
    assert_eq!(rows.len(), 3, "{out}");
    let leaders: std::collections::BTreeSet<u64> = rows
        .iter()
        .filter_map(|r| r["Status"]["leader"].as_u64())
        .collect();
    assert_eq!(leaders.len(), 1, "members disagree on the leader: {out}");
    let ids: std::collections::BTreeSet<u64> = rows
        .iter()
        .filter_map(|r| r["Status"]["header"]["member_id"].as_u64())
        .collect();
    assert_eq!(ids.len(), 3, "{out}");
    assert!(ids.is_superset(&leaders), "{out}");
    let (code, out, _) = ctl(&pki, &all, &["endpoint", "status"]);
    assert_eq!(code, 0);
    assert_eq!(out.matches(", true, ").count(), 1, "one leader: {out}");
    let (code, out, err) = ctl(&pki, &all, &["endpoint", "health"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out.matches("is healthy").count() + err.matches("is healthy").count(),
        3
    );

    // A client without a certificate is refused (--client-cert-auth=true).
    let out = Command::new("timeout")
        .args(["-s", "INT", "10", "etcdctl"])
        .arg(format!("--endpoints={}", node_eps[0]))
        .arg(format!("--cacert={}", pki.join("ca.crt").display()))
        .args([
            "--dial-timeout=2s",
            "--command-timeout=3s",
            "get",
            "/registry/flags",
        ])
        .env("ETCDCTL_API", "3")
        .output()
        .expect("etcdctl");
    assert!(
        !out.status.success(),
        "a client without a certificate got in"
    );
}

#[test]
fn refused_and_unknown_flags_stop_the_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (flags, says) in [
        (
            vec!["--force-new-cluster"],
            "--force-new-cluster is not supported",
        ),
        (
            vec!["--discovery=https://discovery.etcd.io/abc"],
            "discovery is not supported",
        ),
        (vec!["--no-such-flag=1"], "--no-such-flag"),
        (
            vec!["--listen-client-urls=http://127.0.0.1:45999"],
            "--advertise-client-urls is required",
        ),
    ] {
        let data = format!("--data-dir={}", dir.path().join("d").display());
        let out = Command::new(janus_bin())
            .arg("etcd")
            .arg(&data)
            .args(&flags)
            .env("JANUS_ZK_LISTEN", format!("127.0.0.1:{}", free_port()))
            .output()
            .expect("janus");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{flags:?} started");
        assert!(err.contains(says), "{flags:?}: {err}");
    }
    let out = Command::new(janus_bin())
        .args(["etcd", "--version"])
        .output()
        .expect("janus");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("etcd Version: 3.5"));
}
